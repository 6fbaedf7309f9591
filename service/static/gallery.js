// Demo page at /, gallery panels: enroll the largest face of a photo under a name (creating the
// subject), and identify the largest face of a photo among the enrolled subjects.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);

  function headers() {
    const key = byId("api-key");
    return key && key.value ? { "X-API-Key": key.value } : {};
  }

  // The API answers {"detail", "code", "field"}; detail usually starts with the field already.
  function errorText(status, body) {
    if (body && typeof body.detail === "string") return body.detail;
    return `The service answered with status ${status}.`;
  }

  function say(id, text, isError = false) {
    const out = byId(id);
    out.textContent = text;
    out.className = isError ? "gallery-result error" : "gallery-result";
  }

  async function post(url, data, resultId, button, onSuccess) {
    button.disabled = true;
    say(resultId, "Working…");
    try {
      const response = await fetch(url, { method: "POST", body: data, headers: headers() });
      const body = await response.json().catch(() => null);
      if (response.ok && body) say(resultId, onSuccess(body));
      else say(resultId, errorText(response.status, body), true);
    } catch {
      say(resultId, "Could not reach the service. Is it still running?", true);
    } finally {
      button.disabled = false;
    }
  }

  byId("enroll-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const subject = byId("enroll-subject").value;
    const data = new FormData();
    data.append("image", byId("enroll-image").files[0]);
    data.append("create_subject", "true");
    const url = event.target.dataset.subjects + encodeURIComponent(subject) + "/faces";
    post(url, data, "enroll-result", byId("enroll"), (body) =>
      `Enrolled a face of ${body.subject} (face ${body.face.face_id}).`);
  });

  byId("identify-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData();
    data.append("image", byId("identify-image").files[0]);
    post(event.target.action, data, "identify-result", byId("identify"), (body) => {
      const face = body.faces[0];
      const best = face.candidates[0];
      const limit = `threshold ${body.threshold.toFixed(4)}`;
      if (face.subject) {
        return `Identified: ${face.subject} (distance ${best.distance.toFixed(4)} ≤ ${limit}).`;
      }
      if (!best) return "Unknown: nobody is enrolled yet.";
      return `Unknown: the closest is ${best.subject} at distance ` +
        `${best.distance.toFixed(4)} > ${limit}.`;
    });
  });
})();
