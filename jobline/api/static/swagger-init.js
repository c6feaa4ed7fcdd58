// Starts Swagger UI as Flask-RESTX's page does, from a file rather than an
// inline script, so that the Content-Security-Policy needs no 'unsafe-inline'.
"use strict";

window.addEventListener("load", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.specsUrl,
    validatorUrl: null,
    dom_id: "#swagger-ui",
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIStandalonePreset.slice(1)],
    plugins: [window.SwaggerUIBundle.plugins.DownloadUrl],
    docExpansion: "none",
  });
});
