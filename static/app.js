/* Upload page, result view and history: plain JS talking to the JSON API.
   User-supplied text is only ever set with textContent, never parsed as HTML. */
(function () {
  "use strict";
  const POLL_MS = 800;
  const MAX_POLLS = 4500;          // an hour at POLL_MS: polling always ends
  const MAX_BUSY_RETRIES = 40;     // re-send after a 503 at most this many times
  const TOKEN_KEY = "dfpipe-token";

  const $ = (sel, root) => (root || document).querySelector(sel);
  const token = () => window.localStorage.getItem(TOKEN_KEY) || "";

  function headers() {
    const t = token();
    return t ? {"Authorization": "Bearer " + t} : {};
  }

  function needToken() {
    const box = $("#token-box");
    if (box) box.hidden = false;
  }

  async function api(url, options) {
    const response = await fetch(url, Object.assign({headers: headers()}, options || {}));
    if (response.status === 401) needToken();
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return {status: response.status, ok: response.ok, body};
  }

  async function blobUrl(url) {
    const response = await fetch(url, {headers: headers()});
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return URL.createObjectURL(await response.blob());
  }

  async function download(url, name) {
    try {
      const href = await blobUrl(url);
      const a = document.createElement("a");
      a.href = href;
      a.download = name;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 10000);
    } catch (e) {
      window.alert(`Download failed: ${e.message}`);
    }
  }

  const fmt = (x, digits) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(digits));

  // -- model information ----------------------------------------------------------------------
  async function showModel() {
    const box = $("#model-info");
    if (!box) return;
    const r = await api("/api/model");
    if (!r.ok || !r.body) {
      box.textContent = r.status === 401 ? "model: API token needed" : "model: unavailable";
      return;
    }
    const m = r.body;
    box.textContent = `model ${m.name || "?"} (${m.backbone || "?"}, ${m.input_size || "?"} px) ` +
      `- threshold ${fmt(m.threshold, 3)} - ${m.aggregate} of crop scores - ` +
      `faces by ${m.detector}` + ((m.crop_unknown || []).length
        ? ` (crop settings unknown: ${m.crop_unknown.join(", ")}; defaults used)` : "");
    box.title = `${m.threshold_source}\n${m.crop_source}`;
  }

  // -- one job card ---------------------------------------------------------------------------
  const STAGES = ["upload", "queued", "frames", "heatmaps", "done"];

  function newCard(name) {
    const node = $("#job-template").content.firstElementChild.cloneNode(true);
    $(".filename", node).textContent = name;
    $("#jobs").prepend(node);
    return node;
  }

  function setStage(card, stage, fraction, text) {
    const at = STAGES.indexOf(stage);
    card.querySelectorAll(".stages li").forEach((li) => {
      const i = STAGES.indexOf(li.dataset.stage);
      li.classList.toggle("done", at > i || stage === "done");
      li.classList.toggle("current", i === at && stage !== "done");
    });
    $(".bar-fill", card).style.width = `${Math.round(100 * Math.max(0, Math.min(1, fraction)))}%`;
    if (text !== undefined) $(".progress-text", card).textContent = text;
  }

  function setStatus(card, text, kind) {
    const s = $(".status", card);
    s.textContent = text;
    s.className = "status " + (kind || "");
  }

  function uploadFile(file, card, attempt) {
    const maxMb = Number($("#jobs").dataset.maxMb || 0);
    if (maxMb && file.size > maxMb * 1024 * 1024) {
      fail(card, `the file is larger than the ${maxMb} MB limit: send a shorter or more ` +
        "compressed video");
      return;
    }
    const form = new FormData();
    form.append("video", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/analyze");
    const t = token();
    if (t) xhr.setRequestHeader("Authorization", "Bearer " + t);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        setStage(card, "upload", 0, `uploading ${Math.round(100 * e.loaded / e.total)}%`);
        $(".bar-fill", card).style.width = `${Math.round(100 * e.loaded / e.total)}%`;
      }
    };
    xhr.onerror = () => fail(card, "upload failed: the server could not be reached");
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
      if (xhr.status === 202) {
        card.dataset.jobId = body.job_id;
        setStage(card, "queued", 0, "waiting for a worker");
        setStatus(card, "queued");
        poll(card, body.job_id, 0);
      } else if (xhr.status === 503 && attempt < MAX_BUSY_RETRIES) {
        const wait = Number(xhr.getResponseHeader("Retry-After") || body.retry_after_s || 10);
        setStatus(card, "server busy", "warn");
        setStage(card, "upload", 0, `${body.error || "server busy"} (retrying in ${wait} s)`);
        setTimeout(() => uploadFile(file, card, attempt + 1), wait * 1000);
      } else {
        if (xhr.status === 401) needToken();
        fail(card, body.error || (xhr.status === 413 ?
          "the file is larger than the server's upload limit" :
          `upload refused (HTTP ${xhr.status})`));
      }
    };
    setStatus(card, "uploading");
    xhr.send(form);
  }

  function fail(card, message) {
    setStatus(card, "error", "bad");
    $(".progress-text", card).textContent = message;
    card.classList.add("failed");
  }

  async function poll(card, jobId, count) {
    if (count > MAX_POLLS) {
      fail(card, "stopped waiting for this job: reload the page to check it again");
      return;
    }
    const r = await api(`/api/jobs/${jobId}`);
    if (!r.ok || !r.body) {
      fail(card, (r.body && r.body.error) || `cannot read the job (HTTP ${r.status})`);
      return;
    }
    const job = r.body;
    $(".filename", card).textContent = job.filename;
    const p = job.progress;
    if (job.status === "error") {
      setStage(card, "upload", 0);
      fail(card, job.message);
      return;
    }
    const what = p.stage === "frames" ? `reading frames and faces: ${p.done} of ${p.total}` :
      p.stage === "heatmaps" ? `drawing heatmaps: ${p.done} of ${p.total}` :
      p.stage === "queued" ? "waiting for a worker" : "";
    setStage(card, p.stage, p.fraction, what);
    setStatus(card, job.status === "done" ? "done" : job.status);
    // polls carry status, progress and the verdict; the per-frame result has its own URL
    if (job.verdict && !card.dataset.shown) {
      const r = await api(job.result_url);
      if (r.ok && r.body && r.body.result) {
        card.dataset.shown = "1";
        job.result = r.body.result;
        showResult(card, job);
      }
    }
    if (job.status === "done") {
      setStage(card, "done", 1, `judged in ${fmt(job.upload_to_verdict_s, 1)} s after upload`);
      if (card.dataset.shown) {
        const r = await api(job.result_url);
        if (r.ok && r.body && r.body.result) {
          job.result = r.body.result;
          refreshHeatmaps(card, job);
        }
      }
      return;
    }
    setTimeout(() => poll(card, jobId, count + 1), POLL_MS);
  }

  function verdictClass(verdict) {
    return verdict === "FAKE" ? "fake" : verdict === "REAL" ? "real" : "noface";
  }

  function showResult(card, job) {
    const res = job.result;
    const box = $(".verdict-box", card);
    box.hidden = false;
    const v = $(".verdict", box);
    v.textContent = res.verdict;
    v.className = "verdict " + verdictClass(res.verdict);
    $(".pfake", box).textContent = fmt(res.score, 3);
    $(".threshold", box).textContent = fmt(res.threshold, 3);
    const margin = $(".margin", box);
    if (res.margin === null || res.margin === undefined) {
      margin.textContent = "";
    } else {
      const side = res.margin >= 0 ? "above" : "below";
      margin.textContent = `${fmt(Math.abs(res.margin), 3)} ${side} the threshold` +
        (res.borderline ? " - borderline" : "");
      margin.className = "margin " + (res.borderline ? "warn" : "");
    }
    $(".explain", box).textContent = res.message;
    const warn = $(".warnings", box);
    warn.textContent = "";
    for (const w of res.warnings || []) {
      const li = document.createElement("li");
      li.textContent = w;
      warn.appendChild(li);
    }
    const vid = res.video;
    $(".details", box).textContent =
      `${vid.width}x${vid.height}, ${fmt(vid.duration_s, 1)} s at ${fmt(vid.fps, 1)} fps; ` +
      `${vid.frames_sampled} frames sampled, ${vid.faces} face crops; ` +
      `${res.aggregate} of crop scores; decode ${fmt(res.timing.decode_s, 2)} s, ` +
      `detect ${fmt(res.timing.detect_s + (res.timing.crop_s || 0), 2)} s, ` +
      `classify ${fmt(res.timing.classify_s, 2)} s`;
    const exports = $(".exports", card);
    exports.hidden = false;
    $(".export-json", card).onclick = () => download(job.json_url, `dfpipe-${job.id}.json`);
    $(".export-csv", card).onclick = () => download(job.csv_url, `dfpipe-${job.id}.csv`);
    if (res.frames && res.frames.length) {
      $(".chart-box", card).hidden = false;
      const chart = $(".chart", card);
      chart.textContent = "";
      chart.appendChild(window.dfChart.scoreChart(res.frames, res.threshold));
    }
    showFaces(card, res);
  }

  function showFaces(card, res) {
    const faces = res.faces || [];
    if (!faces.length) return;
    $(".faces-box", card).hidden = false;
    const grid = $(".faces", card);
    grid.textContent = "";
    for (const f of faces) {
      const tile = document.createElement("figure");
      tile.className = `face ${f.call}`;
      tile.dataset.index = f.index;
      const img = document.createElement("img");
      img.className = "crop";
      img.alt = `face ${f.index} at frame ${f.frame}`;
      const heat = document.createElement("img");
      heat.className = "heat";
      heat.alt = `Grad-CAM of face ${f.index}`;
      const cap = document.createElement("figcaption");
      cap.textContent = `${fmt(f.score, 3)} - ${f.time_s === null ? "frame " + f.frame :
        fmt(f.time_s, 1) + " s"}`;
      tile.title = `frame ${f.frame}, face ${f.face}, detector confidence ` +
        `${fmt(f.confidence, 3)}, face ${fmt(f.face_size, 0)} px`;
      tile.append(img, heat, cap);
      grid.appendChild(tile);
      blobUrl(f.crop_url).then((u) => { img.src = u; }).catch(() => { img.alt = "missing"; });
    }
    const toggle = $(".show-heat", card);
    toggle.onchange = () => grid.classList.toggle("show-heat", toggle.checked);
  }

  function refreshHeatmaps(card, job) {
    const res = job.result;
    const note = $(".heat-note", card);
    const info = res.heatmaps || {};
    note.textContent = info.available ?
      `Red areas pushed each face towards its own call (fake or real); layer ${info.layer}.` :
      `No heatmaps: ${info.reason || "not available"}.`;
    for (const f of res.faces || []) {
      const tile = card.querySelector(`.face[data-index="${f.index}"] .heat`);
      if (tile && f.heatmap_url && !tile.src) {
        blobUrl(f.heatmap_url).then((u) => { tile.src = u; }).catch(() => { tile.alt = "missing"; });
      }
    }
  }

  // -- page wiring ----------------------------------------------------------------------------
  function addFiles(files) {
    for (const file of files) uploadFile(file, newCard(file.name), 0);
  }

  function initAnalyse() {
    const zone = $("#dropzone");
    const input = $("#file-input");
    $("#pick").addEventListener("click", () => input.click());
    zone.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
    });
    input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
    });
    const existing = $("#jobs").dataset.jobId;
    if (existing) {
      const card = newCard("loading...");
      card.dataset.jobId = existing;
      poll(card, existing, 0);
    }
  }

  async function initHistory() {
    const body = $("#history tbody");
    const r = await api("/api/jobs");
    if (!r.ok || !r.body) {
      $("#history-empty").hidden = false;
      $("#history-empty").textContent = (r.body && r.body.error) || "History unavailable.";
      return;
    }
    $("#history-empty").hidden = r.body.jobs.length > 0;
    for (const job of r.body.jobs) {
      const tr = document.createElement("tr");
      const cells = [new Date(job.created * 1000).toLocaleString(), job.filename,
        job.verdict || "", fmt(job.score, 3), job.status === "error" ? job.message : job.status];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      tr.children[2].className = "verdict-cell " + verdictClass(job.verdict);
      const actions = document.createElement("td");
      const open = document.createElement("a");
      open.href = job.page_url;
      open.textContent = "open";
      const del = document.createElement("button");
      del.type = "button";
      del.textContent = "delete";
      del.onclick = async () => {
        const d = await api(job.status_url, {method: "DELETE"});
        if (d.ok) tr.remove(); else window.alert((d.body && d.body.error) || "cannot delete");
      };
      actions.append(open, " ", del);
      tr.appendChild(actions);
      body.appendChild(tr);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const save = $("#token-save");
    if (save) {
      save.addEventListener("click", () => {
        window.localStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
        window.location.reload();
      });
    }
    showModel();
    const page = document.body.dataset.page;
    if (page === "analyse") initAnalyse();
    if (page === "history") initHistory();
  });
})();
