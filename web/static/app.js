// jubako registry dashboard: the little JavaScript it needs (no framework, no CDN).
// Copy buttons, confirmations, the labels editor and the archive upload with progress.
"use strict";

(function () {
  function copyText(text, button) {
    function done() {
      var old = button.textContent;
      button.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(function () { button.textContent = old; button.classList.remove("copied"); }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else {
      fallback(text);
      done();
    }
  }

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }

  function initCopy() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        if (source) copyText(source.textContent, button);
      });
    });
  }

  function initConfirm() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
    document.querySelectorAll("[data-back]").forEach(function (b) {
      b.addEventListener("click", function () { history.back(); });
    });
  }

  function initLabels() {
    var add = document.querySelector("[data-add-label]");
    var rows = document.querySelector("[data-label-rows]");
    if (!add || !rows) return;
    add.addEventListener("click", function () {
      var template = rows.querySelector("[data-template]");
      var row = template.cloneNode(true);
      row.removeAttribute("data-template");
      row.querySelectorAll("input").forEach(function (i) { i.value = ""; });
      rows.appendChild(row);
      row.querySelector("input").focus();
    });
  }

  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;  // never innerHTML: names are data
    return node;
  }

  function initPush() {
    var form = document.getElementById("push-form");
    if (!form) return;
    var box = document.getElementById("push-progress");
    var bar = document.getElementById("push-bar");
    var percent = document.getElementById("push-percent");
    var status = document.getElementById("push-status");
    var result = document.getElementById("push-result");
    var submit = document.getElementById("push-submit");

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = document.getElementById("archive").files[0];
      if (!file) return;
      var params = new URLSearchParams();
      document.getElementById("push-labels").value.split(",").forEach(function (item) {
        if (item.trim()) params.append("label", item.trim());
      });
      if (document.getElementById("push-force").checked) params.append("force", "true");
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action") + (params.toString() ? "?" + params : ""));
      xhr.setRequestHeader("X-CSRF-Token", form.getAttribute("data-csrf"));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.responseType = "json";
      box.hidden = false;
      box.setAttribute("data-state", "uploading");
      result.textContent = "";
      submit.disabled = true;
      bar.value = 0;
      percent.textContent = "0%";
      status.textContent = "Uploading " + file.name + " (" + human(file.size) + ")…";
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        var p = Math.floor((e.loaded / e.total) * 100);
        bar.value = p;
        percent.textContent = p + "%";
        status.textContent = "Uploading " + file.name + ": " + human(e.loaded) + " of " + human(e.total);
      });
      xhr.upload.addEventListener("load", function () {
        bar.value = 100;
        percent.textContent = "100%";
        status.textContent = "Uploaded; the registry is verifying and storing the files…";
        box.setAttribute("data-state", "verifying");
      });
      xhr.addEventListener("load", function () {
        submit.disabled = false;
        var body = xhr.response || {};
        if (xhr.status >= 200 && xhr.status < 300) {
          box.setAttribute("data-state", "done");
          status.textContent = "Done.";
          var msg = el("div", { "class": "flash flash-success", id: "push-done" });
          msg.appendChild(el("strong", {}, "Pushed. "));
          var list = el("ul", { "class": "plain result-list" });
          (body.pushed || []).forEach(function (p) {
            var li = el("li");
            li.appendChild(el("span", { "class": "muted" }, p.kind + " "));
            li.appendChild(el("a", { href: p.url }, p.tag));
            li.appendChild(el("span", { "class": "muted" }, p.created ? " pushed, " + human(p.uploaded_bytes) + " stored" : " already in the registry"));
            list.appendChild(li);
          });
          msg.appendChild(list);
          result.appendChild(msg);
        } else {
          box.setAttribute("data-state", "failed");
          status.textContent = "Failed.";
          var detail = body.detail || ("HTTP " + xhr.status);
          if (typeof detail !== "string") detail = JSON.stringify(detail);
          result.appendChild(el("div", { "class": "flash flash-error", id: "push-error", role: "alert" }, "Push refused: " + detail));
        }
      });
      xhr.addEventListener("error", function () {
        submit.disabled = false;
        box.setAttribute("data-state", "failed");
        status.textContent = "The connection failed.";
        result.appendChild(el("div", { "class": "flash flash-error", id: "push-error", role: "alert" }, "Upload failed: connection error."));
      });
      xhr.send(file);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initCopy();
    initConfirm();
    initLabels();
    initPush();
  });
})();
