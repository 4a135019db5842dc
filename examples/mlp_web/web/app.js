// Calls the service's API relative to this page (/ui/ -> ../predict), so the page also
// works when the proxy is reached under a path prefix (JUBAKO_ROOT_PATH).
"use strict";

const FEATURES = 16;
const form = document.getElementById("features");
const out = document.getElementById("probabilities");
const error = document.getElementById("error");
const inputs = [];  // not form.elements: the Predict button belongs to the form as well

for (let i = 0; i < FEATURES; i++) {
  const input = document.createElement("input");
  input.type = "number";
  input.step = "any";
  input.value = "0";
  input.name = `x${i}`;
  input.setAttribute("aria-label", `feature ${i}`);
  form.appendChild(input);
  inputs.push(input);
}

document.getElementById("random").addEventListener("click", () => {
  for (const input of inputs) input.value = (Math.random() * 2 - 1).toFixed(3);
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const row = inputs.map((input) => Number(input.value));
  try {
    const response = await fetch("../predict", {
      method: "POST",
      headers: {"content-type": "application/json"},
      body: JSON.stringify([row]),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    out.replaceChildren(...body[0].map((p, k) => {
      const li = document.createElement("li");
      li.textContent = `class ${k}: ${(p * 100).toFixed(1)} %`;
      li.style.setProperty("--p", p);
      return li;
    }));
  } catch (e) {
    error.textContent = `error: ${e.message}`;
  }
});
