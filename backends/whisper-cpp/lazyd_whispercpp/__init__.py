"""The whisper.cpp backend for lazyd (issue 11, in progress): for now the package brings in pywhispercpp,
which loads the ggml files ``lazyd models convert`` writes; the backend itself is not registered yet."""
