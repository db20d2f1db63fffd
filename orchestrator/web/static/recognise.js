"use strict";
// Recognise: a photo from a file, a drop, a paste or the camera goes to POST /v1/recognize;
// the answer is drawn over the photo (one numbered box per face) and listed face by face.

(() => {
  const { api, el, svg, Problem, showProblem, clearProblem, ms, percent } = facerec;
  const $ = (id) => document.getElementById(id);
  let shownUrl = null; // the photo on show, released when another replaces it
  let stream = null; // the camera, while it runs

  const say = (words) => showProblem(new Problem(0, { detail: words }));

  function topK() {
    const value = Number($("top-k").value);
    return Number.isInteger(value) && value >= 1 && value <= 100 ? value : undefined;
  }

  function loaded(img, url) {
    return new Promise((resolve, reject) => {
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Problem(0, { detail: "the browser cannot show this image" }));
      img.src = url;
    });
  }

  async function recognise(photo, filename) {
    clearProblem();
    const progress = $("progress");
    const controls = ["file", "capture", "camera-snap", "top-k"].map($);
    controls.forEach((control) => (control.disabled = true));
    progress.textContent = `Recognising ${filename}…`;
    try {
      const form = new FormData();
      form.append("file", photo, filename);
      const started = performance.now();
      const answer = await api("POST", "/v1/recognize", { form, query: { top_k: topK() } });
      const roundTrip = performance.now() - started;
      if (shownUrl) URL.revokeObjectURL(shownUrl);
      shownUrl = URL.createObjectURL(photo);
      const img = await loaded($("photo"), shownUrl);
      show(answer, img, roundTrip, filename);
      progress.textContent = "";
    } catch (error) {
      $("result").hidden = true;
      progress.textContent = "";
      showProblem(error);
    } finally {
      controls.forEach((control) => (control.disabled = false));
    }
  }

  const THRESHOLD_SOURCES = {
    gallery: "calibrated on this gallery",
    shipped: "the shipped default",
    request: "as asked",
  };
  const COLUMNS = ["#", "Person", "Similarity", "False-accept rate"];
  const bestOf = (face) => (face.decision === "match" && face.matches.length ? face.matches[0] : null);
  const similarity = (value) => value.toFixed(2);

  function show(answer, img, roundTrip, filename) {
    const faces = answer.faces;
    const count = faces.length === 1 ? "1 face" : `${faces.length} faces`;
    const known = faces.filter(bestOf).length;
    $("summary").replaceChildren(
      faces.length ? `${filename}: ${count}, ${known} recognised. ` : `${filename}: no face found in this photo. `,
      el("span", { class: "muted", id: "timing" },
        `Took ${ms(answer.took_ms)} on the server${answer.cached ? " (a cached answer)" : ""}, `,
        `${ms(roundTrip)} round trip; model ${answer.model_version}, match at similarity ≥ `,
        `${similarity(answer.threshold)} (${THRESHOLD_SOURCES[answer.threshold_source] || answer.threshold_source}).`),
    );
    $("result").hidden = false; // shown before drawing: a label is measured to fit the photo
    drawBoxes(faces, img.naturalWidth, img.naturalHeight);
    $("faces").replaceChildren(...faces.map(faceItem));
  }

  // The overlay uses the photo's own pixels as its coordinates, as the answer's boxes do.
  function drawBoxes(faces, width, height) {
    const overlay = $("overlay");
    overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const size = Math.max(14, Math.round(Math.max(width, height) / 40));
    const described = faces.map((face, i) => {
      const best = bestOf(face);
      return `face ${i + 1}: ${best ? `${best.name}, similarity ${similarity(best.similarity)}` : "unknown"}`;
    });
    const title = svg("title", { id: "overlay-title" }, faces.length ? described.join("; ") : "No face found");
    overlay.replaceChildren(title);
    faces.forEach((face, i) => drawFace(overlay, face, i + 1, size, width));
  }

  function drawFace(overlay, face, number, size, width) {
    const [x1, y1, x2, y2] = face.box;
    const best = bestOf(face);
    const kind = best ? "known" : "unknown";
    const box = svg("rect", {
      class: `box ${kind}`,
      x: x1,
      y: y1,
      width: x2 - x1,
      height: y2 - y1,
      dataset: {
        faceIndex: String(number),
        name: best ? best.name : "",
        personId: best ? String(best.person_id) : "",
        similarity: best ? String(best.similarity) : "",
        box: face.box.join(","),
      },
    });
    const text = svg(
      "text",
      { class: "overlay-label", "font-size": size },
      `${number} ${best ? `${best.name} ${similarity(best.similarity)}` : "unknown"}`,
    );
    const back = svg("rect", { class: "overlay-back", height: size * 1.4 });
    overlay.append(svg("g", { class: `face ${kind}` }, box, back, text)); // measured once drawn: kept inside the photo
    const labelWidth = (text.getComputedTextLength() || text.textContent.length * size * 0.6) + size * 0.6;
    const left = Math.max(0, Math.min(x1, width - labelWidth));
    // Above the box when there is room, else just inside its top edge.
    const top = y1 - size * 1.4 >= 0 ? y1 - size * 1.4 : y1;
    Object.entries({ x: left, y: top, width: labelWidth }).forEach(([name, value]) => back.setAttribute(name, value));
    text.setAttribute("x", left + size * 0.3);
    text.setAttribute("y", top + size * 1.05);
  }

  function faceItem(face, i) {
    const best = bestOf(face);
    const heading = el(
      "h3",
      {},
      `Face ${i + 1}: `,
      best ? best.name : "unknown",
      " ",
      el("span", { class: `badge ${best ? "good" : "warn"}` }, best ? "match" : "no match"),
    );
    const facts = el(
      "p",
      { class: "muted" },
      `Detection ${percent(face.det_score)}, quality ${percent(face.quality)}, `,
      `box ${face.box.map(Math.round).join(", ")}`,
    );
    if (!face.matches.length) {
      return el("li", { class: "face-result", dataset: { faceIndex: String(i + 1) } }, heading, facts,
        el("p", {}, "Nobody in the gallery resembles this face."));
    }
    const rows = face.matches.map((match, rank) =>
      el(
        "tr",
        { class: rank === 0 && best ? "best" : undefined },
        el("td", {}, String(rank + 1)),
        el("td", {}, el("a", { href: `/people/${match.person_id}` }, match.name)),
        el("td", {}, similarity(match.similarity)),
        el("td", {}, match.far < 0.001 ? match.far.toExponential(1) : String(match.far)),
      ),
    );
    const table = el(
      "table",
      {},
      el("caption", { class: "muted" }, `The ${face.matches.length} closest people to face ${i + 1}`),
      el("thead", {}, el("tr", {}, ...COLUMNS.map((column) => el("th", { scope: "col" }, column)))),
      el("tbody", {}, rows),
    );
    return el("li", { class: "face-result", dataset: { faceIndex: String(i + 1) } }, heading, facts,
      el("div", { class: "scroll" }, table));
  }

  function pick(files) {
    if (!files || !files.length) {
      say("That was not a file: drop or choose a photo.");
      return;
    }
    recognise(files[0], files[0].name || "photo");
  }

  // The camera: a live preview, and a still of it sent as a JPEG.
  const CAMERA_TROUBLE = {
    NotAllowedError: "The camera permission was refused: allow the camera for this site, or choose a photo.",
    SecurityError: "The camera permission was refused: allow the camera for this site, or choose a photo.",
    NotFoundError: "No camera was found on this device: choose a photo instead.",
    OverconstrainedError: "No camera was found on this device: choose a photo instead.",
    NotReadableError: "The camera is in use by another program, or the system refused it.",
  };

  async function startCamera() {
    clearProblem();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      $("capture-label").hidden = false;
      say(
        "This browser offers no camera to this page (a camera needs https or localhost). " +
          "Choose a photo, or take one with this device.",
      );
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
    } catch (error) {
      $("capture-label").hidden = false;
      say(CAMERA_TROUBLE[error.name] || `The camera could not start: ${error.message || error.name}.`);
      return;
    }
    const video = $("video");
    video.srcObject = stream;
    await video.play();
    $("camera").hidden = false;
    $("camera-start").disabled = true;
    $("camera-snap").focus();
  }

  function stopCamera() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    $("video").srcObject = null;
    $("camera").hidden = true;
    $("camera-start").disabled = false;
  }

  function snap() {
    const video = $("video");
    if (!video.videoWidth) {
      say("The camera has not given a picture yet: try again in a moment.");
      return;
    }
    const canvas = el("canvas", { width: video.videoWidth, height: video.videoHeight });
    canvas.getContext("2d").drawImage(video, 0, 0);
    const kept = (blob) => (blob ? recognise(blob, "camera.jpg") : say("The camera's picture could not be kept."));
    canvas.toBlob(kept, "image/jpeg", 0.92);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const id of ["file", "capture"]) {
      $(id).addEventListener("change", (event) => {
        if (event.target.files.length) pick(event.target.files);
        event.target.value = ""; // the same file chosen again is recognised again
      });
    }
    const drop = $("drop");
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (event) => {
        event.preventDefault();
        drop.classList.add("over");
      });
    }
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      pick(event.dataTransfer.files);
    });
    document.addEventListener("paste", (event) => {
      const files = event.clipboardData ? event.clipboardData.files : null;
      if (files && files.length) pick(files);
    });
    $("camera-start").addEventListener("click", startCamera);
    $("camera-stop").addEventListener("click", stopCamera);
    $("camera-snap").addEventListener("click", snap);
    window.addEventListener("pagehide", stopCamera);
  });
})();
