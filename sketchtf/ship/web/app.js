// Live canvas: strokes go to the SavedModel's predict_strokes signature through
// TF Serving's REST predict API (sketchtf.ship.serve, same origin). The model renders
// the strokes itself with the training renderer, so the page sends raw points
// in canvas pixels (x right, y down) and never draws for the model.
"use strict";

(function () {
  const SEND_EVERY_MS = 120;  // coalesce pointer moves: at most one request per interval
  const MIN_STEP_PX = 1.5;    // drop points closer than this to the previous one
  const LINE_WIDTH = 4;

  const params = new URLSearchParams(location.search);
  const canvas = document.getElementById("pad");
  const ctx = canvas.getContext("2d");
  const list = document.getElementById("guesses");
  const statusEl = document.getElementById("status");
  const modelEl = document.getElementById("model");

  const state = {
    model: params.get("model"),
    version: params.get("version"),
    strokes: [],          // [[[x, y], ...], ...] in canvas pixels
    drawing: null,        // pointerId of the stroke being drawn
    epoch: 0,             // bumped by clear/undo: older answers are dropped
    timer: null, inFlight: false, dirty: false,
    requests: 0, lastRequest: null, lastResponse: null, shownPoints: 0, error: null,
  };
  window.sketchtf = state;  // read by the browser test

  function numPoints() { return state.strokes.reduce((n, s) => n + s.length, 0); }

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", !!isError);
  }

  // ---------------------------------------------------------------- drawing
  function canvasPoint(ev) {
    const r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height];
  }

  function strokePath(pts) {
    ctx.beginPath();
    ctx.moveTo(pts[0][0], pts[0][1]);
    if (pts.length === 1) ctx.lineTo(pts[0][0] + 0.01, pts[0][1]);  // a tap still leaves a dot
    for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
    ctx.stroke();
  }

  function redraw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.lineWidth = LINE_WIDTH; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#111";
    state.strokes.forEach(strokePath);
  }

  function addPoint(p) {
    const s = state.strokes[state.strokes.length - 1];
    const last = s[s.length - 1];
    if (Math.hypot(p[0] - last[0], p[1] - last[1]) < MIN_STEP_PX) return false;
    s.push(p);
    ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
    return true;
  }

  canvas.addEventListener("pointerdown", (ev) => {
    if (state.drawing !== null || (ev.pointerType === "mouse" && ev.button !== 0)) return;
    ev.preventDefault();
    canvas.setPointerCapture(ev.pointerId);
    state.drawing = ev.pointerId;
    state.strokes.push([canvasPoint(ev)]);
    redraw();
    schedule();
  });

  canvas.addEventListener("pointermove", (ev) => {
    if (ev.pointerId !== state.drawing) return;
    const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
    let added = false;
    for (const e of (events.length ? events : [ev])) added = addPoint(canvasPoint(e)) || added;
    if (added) schedule();
  });

  function endStroke(ev) {
    if (ev.pointerId !== state.drawing) return;
    addPoint(canvasPoint(ev));
    state.drawing = null;
    schedule();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  document.getElementById("undo").addEventListener("click", () => {
    if (state.drawing !== null) return;
    state.strokes.pop();
    edited();
  });
  document.getElementById("clear").addEventListener("click", () => {
    state.strokes = [];
    state.drawing = null;
    edited();
  });

  function edited() {
    state.epoch++;
    redraw();
    if (state.strokes.length) schedule();
    else { showGuesses([]); state.shownPoints = 0; setStatus("Draw something."); }
  }

  // ------------------------------------------------------------- predicting
  function schedule() {
    if (state.timer === null) state.timer = setTimeout(flush, SEND_EVERY_MS);
  }

  function flush() {
    state.timer = null;
    if (!state.strokes.length || !state.model) return;
    if (state.inFlight) { state.dirty = true; return; }  // one request at a time, the newest strokes next
    predict();
  }

  function requestBody() {
    const rows = [];
    state.strokes.forEach((s, k) => s.forEach((p) => rows.push([+p[0].toFixed(1), +p[1].toFixed(1), k])));
    return { signature_name: "predict_strokes", instances: [{ strokes: rows, lengths: rows.length }] };
  }

  async function predict() {
    const body = requestBody();
    const epoch = state.epoch, points = body.instances[0].lengths;
    const url = "v1/models/" + encodeURIComponent(state.model) +
      (state.version ? "/versions/" + encodeURIComponent(state.version) : "") + ":predict";
    state.inFlight = true;
    state.requests++;
    state.lastRequest = body;
    try {
      const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify(body) });
      const json = await resp.json();
      if (!resp.ok) throw new Error(json.error || ("HTTP " + resp.status));
      if (epoch === state.epoch) {
        state.lastResponse = json;
        state.shownPoints = points;
        state.error = null;
        const p = json.predictions[0];
        showGuesses(p.top_k_names.map((n, i) => [n, p.top_k_probabilities[i]]));
        setStatus(points === numPoints() ? "" : "…");
      }
    } catch (err) {
      state.error = String(err.message || err);
      setStatus("Prediction failed: " + state.error, true);
    } finally {
      state.inFlight = false;
      // Catch up once the strokes changed while this request was out (not after an error: no retry loop).
      if (state.dirty || (!state.error && state.strokes.length && numPoints() !== state.shownPoints)) {
        state.dirty = false;
        schedule();
      }
    }
  }

  function showGuesses(guesses) {
    list.replaceChildren(...guesses.map(([name, prob]) => {
      const li = document.createElement("li");
      const n = document.createElement("span"); n.className = "name"; n.textContent = name;
      const p = document.createElement("span"); p.className = "prob"; p.textContent = (100 * prob).toFixed(1) + "%";
      const bar = document.createElement("div"); bar.className = "bar";
      const fill = document.createElement("span"); fill.style.width = (100 * prob).toFixed(1) + "%";
      bar.appendChild(fill);
      li.append(n, p, bar);
      return li;
    }));
  }

  // ------------------------------------------------------------------ start
  redraw();
  (state.model ? Promise.resolve({ model_name: state.model, version: state.version })
               : fetch("sketchtf.json").then((r) => r.json()))
    .then((info) => {
      state.model = info.model_name;
      modelEl.textContent = "model: " + state.model + (info.version ? " (version " + info.version + ")" : "");
      setStatus("Draw something.");
      if (state.strokes.length) schedule();
    })
    .catch((err) => setStatus("No model server: " + err.message, true));
})();
