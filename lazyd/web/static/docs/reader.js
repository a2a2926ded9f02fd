// Shows /openapi.json with Swagger UI, from this server only: no validator badge (it would call
// validator.swagger.io), and "Try it out" sends requests to this daemon.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#reader",
  validatorUrl: null,
  deepLinking: true,
  persistAuthorization: false,
});
