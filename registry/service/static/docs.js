// Starts Swagger UI on this server's OpenAPI document. Kept out of the page so the page's CSP
// can refuse every inline script; the validator badge is off because it calls a remote service.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: new URL(root.dataset.openapi, document.baseURI).href,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null,
    showExtensions: true, // x-govflow-roles: who may call each route
  });
});
