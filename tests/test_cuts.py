"""Which words a chunk keeps of what it decoded past its cuts (lazyd/jobs/cuts.py)."""

from __future__ import annotations

from lazyd.backend import Segment, Word
from lazyd.jobs.cuts import Span, joined


def segment(*words: tuple[float, float, str]) -> Segment:
    timed = tuple(Word(start, end, text, 0.9) for start, end, text in words)
    return Segment(timed[0].start, timed[-1].end, joined(timed), timed, -0.2, 0.01)


MIDDLE = Span.around(10.0, 20.0, duration=30.0, overlap=2.0)


def test_a_chunk_is_decoded_past_both_cuts_but_not_past_the_recording():
    assert (MIDDLE.decode_start, MIDDLE.decode_end) == (8.0, 22.0)
    assert (Span.around(0.0, 10.0, 30.0, 2.0).decode_start, Span.around(20.0, 30.0, 30.0, 2.0).decode_end) == (0, 30)


def test_a_segment_inside_the_chunk_is_kept_as_it_is():
    inside = segment((11.0, 11.5, "Heat"), (11.5, 12.0, "flows."))
    assert MIDDLE.own_part(inside) is inside


def test_a_segment_crossing_a_cut_keeps_the_words_whose_middle_is_the_chunks():
    crossing = segment((18.8, 19.5, "blocks"), (19.6, 20.3, "placed"), (20.4, 20.9, "side"))
    kept = MIDDLE.own_part(crossing)
    assert [word.word for word in kept.words] == ["blocks", "placed"]  # placed: middle 19.95, before the cut
    assert (kept.start, kept.end, kept.text) == (18.8, 20.3, "blocks placed")
    after = Span.around(20.0, 30.0, 30.0, 2.0).own_part(crossing)
    assert after.text == "side"


def test_a_segment_in_the_overlap_only_is_dropped_and_one_without_words_goes_by_its_middle():
    assert MIDDLE.own_part(segment((20.5, 21.0, "beyond"))) is None
    assert MIDDLE.own_part(Segment(19.0, 20.6, "mostly mine")) is not None
    assert MIDDLE.own_part(Segment(19.6, 21.0, "mostly the next")) is None


def test_the_last_chunk_keeps_a_word_ending_at_the_recordings_end():
    last = Span.around(20.0, 30.0, 30.0, 2.0)
    assert last.own_part(segment((29.9, 30.0, "end."))) is not None


def test_words_that_continue_the_one_before_are_joined_without_a_space():
    words = tuple(Word(0, 1, text, 1.0) for text in ("an", "ill", "-disposed", "man,", "don", "'t", "go."))
    assert joined(words) == "an ill-disposed man, don't go."


def test_the_chunk_after_starts_after_the_last_word_the_one_before_kept_even_when_timed_apart():
    """Two decodes time "it." 0.3 s apart, on both sides of the cut at 45.79: the chunk before kept it
    (middle 45.7), and the chunk after, which times it 45.59 to 46.01 (middle 45.8), must not keep it again."""
    kept_before = Word(45.5, 45.89, "it.", 0.9)
    after_cut = Span.around(45.79, 50.9, 50.9, 2.0, after=kept_before)
    decoded = segment((44.9, 45.5, "around"), (45.59, 46.01, "it."), (46.27, 46.35, "Next"), (46.35, 46.67, "time"))
    assert after_cut.own_part(decoded).text == "Next time"
    retimed = segment((45.8, 46.1, "it."), (46.27, 46.35, "Next"))
    assert after_cut.own_part(retimed).text == "Next"


def test_a_word_the_chunk_before_left_to_the_next_is_kept_there():
    """The chunk before timed "placed" past the cut and left it; the chunk after times it just before the
    cut, yet keeps it, because it starts after the last word the chunk before kept."""
    kept_before = Word(13.2, 13.6, "copper", 0.9)
    after_cut = Span.around(13.97, 30.0, 50.0, 2.0, after=kept_before)
    decoded = segment((13.1, 13.55, "copper"), (13.58, 13.95, "placed"), (14.0, 14.3, "side"))
    assert after_cut.own_part(decoded).text == "placed side"
