// Swagger UI from the installed swagger_ui_bundle; the spec itself needs a token, like every API call.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  let token = localStorage.getItem("crowdsafe.token");
  if (!token) {
    token = window.prompt("API token (crowdsafe token create --role viewer):") || "";
    if (token) localStorage.setItem("crowdsafe.token", token);
  }
  if (!window.SwaggerUIBundle) {
    document.getElementById("swagger-ui").textContent =
      "Swagger UI is not installed on the server (pip install swagger-ui-bundle); the spec is at /openapi.json.";
    return;
  }
  window.SwaggerUIBundle({
    url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    requestInterceptor: (req) => {
      if (token && !req.headers.Authorization) req.headers.Authorization = "Bearer " + token;
      return req;
    },
  });
});
