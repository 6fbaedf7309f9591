// Demo page at /: posts the two chosen photos to /verify and shows the answer in plain words.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("verify-form");
const button = $("verify");
const previewUrls = {};

function showPreview(index) {
  const file = $(`image${index}`).files[0];
  const img = $(`preview${index}`);
  if (previewUrls[index]) URL.revokeObjectURL(previewUrls[index]);
  previewUrls[index] = file ? URL.createObjectURL(file) : null;
  img.hidden = !file;
  if (file) {
    img.src = previewUrls[index];
    img.alt = `preview of ${file.name}`;
  } else {
    img.removeAttribute("src");
  }
}

function show({ status = "", error = "", answer = null }) {
  $("status").textContent = status;
  $("error").textContent = error;
  $("error").hidden = !error;
  $("answer").hidden = !answer;
  const decision = $("decision");
  if (!answer) {
    decision.textContent = "";
    return;
  }
  decision.textContent = answer.match
    ? "Match: the two photos show the same person."
    : "No match: the two photos show different people.";
  decision.className = answer.match ? "match" : "no-match";
  const sign = answer.distance <= answer.threshold ? "≤" : ">";
  $("numbers").textContent =
    `${answer.metric} distance ${answer.distance.toFixed(4)} ${sign} ` +
    `threshold ${answer.threshold.toFixed(4)}`;
  for (const index of [1, 2]) {
    const crop = answer[`image${index}`] && answer[`image${index}`].crop;
    $(`figure${index}`).hidden = !crop;
    if (crop) $(`crop${index}`).src = `data:image/png;base64,${crop}`;
  }
}

// The API answers {"detail", "code", "field"}; detail usually starts with the field already.
function errorText(status, body) {
  if (body && typeof body.detail === "string") {
    const field = body.field;
    return field && !body.detail.startsWith(field) ? `${field}: ${body.detail}` : body.detail;
  }
  return `The service answered with status ${status}.`;
}

async function verify(event) {
  event.preventDefault();
  const data = new FormData();
  data.append("image1", $("image1").files[0]);
  data.append("image2", $("image2").files[0]);
  data.append("return_crops", "true");
  const headers = {};
  const key = $("api-key");
  if (key && key.value) headers["X-API-Key"] = key.value;

  button.disabled = true;
  show({ status: "Verifying…" });
  try {
    const response = await fetch(form.action, { method: "POST", body: data, headers });
    const body = await response.json().catch(() => null);
    if (response.ok && body) show({ answer: body });
    else show({ error: errorText(response.status, body) });
  } catch {
    show({ error: "Could not reach the service. Is it still running?" });
  } finally {
    button.disabled = false;
  }
}

for (const index of [1, 2]) {
  $(`image${index}`).addEventListener("change", () => {
    showPreview(index);
    show({}); // an answer about the previous photos would mislead
  });
  // Not every file the browser can pick is one it can show (TIFF, or not an image at all).
  $(`preview${index}`).addEventListener("error", (event) => {
    event.target.hidden = true;
  });
}
form.addEventListener("submit", verify);
