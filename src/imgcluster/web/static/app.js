// imgcluster web app: one page over the HTTP API (/api/...). No framework, no network beyond this server.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const h = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
};

async function api(path, options) {
  const response = await fetch("/api" + path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try { const body = await response.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}
const getJSON = async (path, options) => (await api(path, options)).json();
const sendJSON = (path, method, body) => getJSON(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

// Progress and success go to the header's status line; an error gets its own banner, in full, until
// closed (Esc or ×) or the next action starts: a failure must not read like a success.
function status(text, isError = false) {
  if (isError) return showError(text);
  $("#status").textContent = text || "";
  hideError();
}
function showError(text) {
  $("#status").textContent = "";
  $("#error-text").textContent = text;
  $("#error").hidden = false;
}
function hideError() { $("#error").hidden = true; }
// A warning, not console.error: the banner is where the user reads it; the console keeps the trace.
const fail = (error) => { console.warn(error); status(error.message || String(error), true); };

// -- colours ---------------------------------------------------------------------------------------
// The colours come from the server (imgcluster/palette.py): each cluster's with the cluster list, chosen
// from the run's map so that neighbours differ, as the report chooses them; the palette for the rest
// (folders, videos) and for a cluster the list does not know.
const hexToRGB = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
const PALETTE = { rgb: [[31, 119, 180]], noise: [169, 174, 182], byCluster: new Map() };
async function loadPalette() {
  const data = await getJSON("/palette");
  PALETTE.rgb = data.colours.map(hexToRGB);
  PALETTE.noise = hexToRGB(data.noise);
}
const ownRGB = (cluster) => PALETTE.byCluster.get(cluster) || LEVEL.partRGB.get(cluster) || PALETTE.rgb[cluster % PALETTE.rgb.length];
// LEVEL (static/tree.js): at a coarser level of the cluster tree a cluster shows its tree node's colour.
const rgbOf = (cluster) => (cluster < 0 ? PALETTE.noise : ownRGB(LEVEL.colourOf(cluster)));
const cssOf = (cluster) => `rgb(${rgbOf(cluster).join(",")})`;

// -- state -----------------------------------------------------------------------------------------
const S = {
  run: null, runs: [], clusters: [], names: new Map(),
  map: null,            // {n, x, y (world, -1..1), cluster (Int32Array), id (Int32Array), grid}
  focus: null,          // cluster shown highlighted, or null
  selection: null,      // Int32Array of map rows selected on the map
  shape: null,          // the polygon (world coordinates) that selected them: the link's sel=
  marker: null,         // [x, y] world position of an uploaded image
  picked: new Set(),    // image ids picked in the grid (to move)
  mergePick: new Set(), // clusters picked to merge
};

// The link holds the view: run=, then image=, cluster= or sel= (the selection's polygon), camera= (the
// map's centre and zoom) and the colouring and filters (view.js). Opening it shows that view again.
const sameLink = (a, b) => {
  const sorted = (hash) => [...new URLSearchParams(hash.replace(/^#/, ""))].map(([k, v]) => `${k}=${v}`).sort().join("&");
  return sorted(a) === sorted(b);
};
function readHash() { return Object.fromEntries(new URLSearchParams(location.hash.slice(1))); }
function writeHash(values) {
  const view = typeof View === "undefined" ? {} : View.params();  // colouring and filters (view.js)
  const params = new URLSearchParams({ ...values, run: S.run, camera: Map2D.cameraParam(), ...view });
  for (const [key, value] of [...params]) if (value === "" || value === "null" || value === "undefined") params.delete(key);
  const hash = "#" + params.toString();
  if (sameLink(hash, location.hash)) return;
  // Each view the user opens is a history entry, so Back and Forward walk through them (see popstate).
  if (S.ready) history.pushState(null, "", hash); else history.replaceState(null, "", hash);
}

// -- the map: WebGL points, one draw call ----------------------------------------------------------
const Map2D = (() => {
  const canvas = $("#map"), overlay = $("#overlay");
  const gl = canvas.getContext("webgl", { antialias: false, preserveDrawingBuffer: true, alpha: false });
  const ctx = overlay.getContext("2d");
  const cam = { k: 0.92, cx: 0, cy: 0 };
  let program, posBuffer, colBuffer, orderBuffer, n = 0, queued = false, firstFrame = true, mode = "pan";
  // Level of detail: while the map moves, frames draw a random subset that fits FRAME_MS (measured on
  // the first full frame); once it rests for FULL_AFTER_MS, every point. Still one draw call each.
  const FRAME_MS = 25, FULL_AFTER_MS = 180;
  let msPerPoint = 0, fullTimer = null;
  const uintIndex = gl.getExtension("OES_element_index_uint");
  const sheets = new Map();  // sprite sheets for the zoomed-in view, by sheet number (one run at a time)

  function compile() {
    const vs = `attribute vec2 p; attribute vec4 c; uniform vec2 s; uniform vec2 o; uniform float z; varying vec4 v;
      void main() { gl_Position = vec4(p * s + o, 0.0, 1.0); gl_PointSize = z; v = c; }`;
    const fs = `precision mediump float; varying vec4 v;
      void main() { vec2 d = gl_PointCoord - 0.5; if (dot(d, d) > 0.25) discard; gl_FragColor = vec4(v.rgb * v.a, v.a); }`;
    const shader = (type, source) => {
      const object = gl.createShader(type);
      gl.shaderSource(object, source);
      gl.compileShader(object);
      if (!gl.getShaderParameter(object, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(object));
      return object;
    };
    program = gl.createProgram();
    gl.attachShader(program, shader(gl.VERTEX_SHADER, vs));
    gl.attachShader(program, shader(gl.FRAGMENT_SHADER, fs));
    gl.linkProgram(program);
    posBuffer = gl.createBuffer();
    colBuffer = gl.createBuffer();
    orderBuffer = gl.createBuffer();
  }

  function size() {
    const dpr = window.devicePixelRatio || 1;
    for (const c of [canvas, overlay]) {
      const w = Math.round(c.clientWidth * dpr), ht = Math.round(c.clientHeight * dpr);
      if (c.width !== w || c.height !== ht) { c.width = w; c.height = ht; }
    }
  }

  // World (-1..1, same scale on both axes) to clip space: (w - c) * k * aspect.
  function aspect() {
    const w = canvas.clientWidth || 1, ht = canvas.clientHeight || 1, m = Math.min(w, ht);
    return [m / w, m / ht];
  }
  function toScreen(x, y) {
    const [ax, ay] = aspect();
    return [((x - cam.cx) * cam.k * ax + 1) / 2 * canvas.clientWidth, (1 - (y - cam.cy) * cam.k * ay) / 2 * canvas.clientHeight];
  }
  function toWorld(px, py) {
    const [ax, ay] = aspect();
    return [(px / canvas.clientWidth * 2 - 1) / (cam.k * ax) + cam.cx, (1 - py / canvas.clientHeight * 2) / (cam.k * ay) + cam.cy];
  }
  function pixelsPerUnit() { return cam.k * Math.min(canvas.clientWidth, canvas.clientHeight) / 2; }

  // The camera as the link writes it (cx,cy,k; rounded, so a link reproduces it), "" at the whole map.
  const HOME = { k: 0.92, cx: 0, cy: 0 };
  function cameraParam() {
    if (cam.k === HOME.k && cam.cx === HOME.cx && cam.cy === HOME.cy) return "";
    return [cam.cx.toFixed(5), cam.cy.toFixed(5), cam.k.toPrecision(5)].join(",");
  }
  function setCamera(text) {
    const [cx, cy, k] = String(text || "").split(",").map(Number);
    if ([cx, cy, k].every(Number.isFinite) && k > 0) Object.assign(cam, { cx, cy, k: Math.min(5000, Math.max(0.2, k)) });
    else Object.assign(cam, HOME);
    draw();
  }
  // Panning and zooming replace the camera in the current history entry (a new entry per view, not per step).
  let savedCamera = null, saveTimer = null;
  function saveCamera() {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => {
      const now = cameraParam(), params = new URLSearchParams(location.hash.slice(1));
      if (params.get("run") !== S.run) return;  // a run is being opened: its own link comes
      savedCamera = now;
      if ((params.get("camera") || "") === now) return;
      if (now) params.set("camera", now); else params.delete("camera");
      history.replaceState(history.state, "", "#" + params.toString());
    }, 250);
  }

  function pointSize() {
    const base = n > 300000 ? 1.6 : n > 50000 ? 2.4 : n > 5000 ? 3.5 : 6;
    return Math.min(24, base * Math.sqrt(cam.k));
  }

  function load(map) {
    n = map.n;
    sheets.clear();
    const xy = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) { xy[2 * i] = map.x[i]; xy[2 * i + 1] = map.y[i]; }
    gl.bindBuffer(gl.ARRAY_BUFFER, posBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
    if (uintIndex) {
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      for (let i = n - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)), t = order[i]; order[i] = order[j]; order[j] = t; }
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, orderBuffer);
      gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, order, gl.STATIC_DRAW);
    }
    recolour();
    Object.assign(cam, HOME);
    savedCamera = "";
    draw();
  }

  function recolour() {
    const map = S.map;
    if (!map) return;
    const colours = new Uint8Array(4 * n);
    const alpha = n > 300000 ? 150 : n > 50000 ? 190 : 220;
    const chosen = S.selection ? new Uint8Array(n) : null;
    if (chosen) for (const row of S.selection) chosen[row] = 1;
    const colourOf = View.colourer(), mask = View.state.mask;  // colour by and filters (view.js)
    for (let i = 0; i < n; i++) {
      const rgb = colourOf(i);
      const dim = (S.focus !== null && map.cluster[i] !== S.focus) || (chosen && !chosen[i]);
      colours[4 * i] = rgb[0]; colours[4 * i + 1] = rgb[1]; colours[4 * i + 2] = rgb[2];
      colours[4 * i + 3] = mask && !mask[i] ? 0 : dim ? 28 : alpha;  // filtered out: not drawn
    }
    document.body.dataset.colourBy = View.state.colourBy;
    gl.bindBuffer(gl.ARRAY_BUFFER, colBuffer);
    gl.bufferData(gl.ARRAY_BUFFER, colours, gl.STATIC_DRAW);
    draw();
  }

  function draw() {
    if (cameraParam() !== savedCamera) saveCamera();
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      const budget = msPerPoint > 0 ? Math.max(50000, Math.floor(FRAME_MS / msPerPoint)) : n;
      render(budget);
      clearTimeout(fullTimer);
      if (budget < n) fullTimer = setTimeout(() => render(n), FULL_AFTER_MS);
    });
  }

  function render(count = n) {
    queued = false;
    size();
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0.984, 0.984, 0.988, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (n) {
      gl.useProgram(program);
      gl.enable(gl.BLEND);
      gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
      const [ax, ay] = aspect();
      gl.uniform2f(gl.getUniformLocation(program, "s"), cam.k * ax, cam.k * ay);
      gl.uniform2f(gl.getUniformLocation(program, "o"), -cam.cx * cam.k * ax, -cam.cy * cam.k * ay);
      gl.uniform1f(gl.getUniformLocation(program, "z"), pointSize() * (window.devicePixelRatio || 1));
      const p = gl.getAttribLocation(program, "p"), c = gl.getAttribLocation(program, "c");
      gl.bindBuffer(gl.ARRAY_BUFFER, posBuffer);
      gl.enableVertexAttribArray(p);
      gl.vertexAttribPointer(p, 2, gl.FLOAT, false, 0, 0);
      gl.bindBuffer(gl.ARRAY_BUFFER, colBuffer);
      gl.enableVertexAttribArray(c);
      gl.vertexAttribPointer(c, 4, gl.UNSIGNED_BYTE, true, 0, 0);
      const started = performance.now();
      if (uintIndex) {
        gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, orderBuffer);
        gl.drawElements(gl.POINTS, Math.min(count, n), gl.UNSIGNED_INT, 0);
      } else {
        gl.drawArrays(gl.POINTS, 0, n);
      }
      if (firstFrame) {
        gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));  // waits for the frame
        if (uintIndex) msPerPoint = (performance.now() - started) / n;
        firstFrame = false;
        document.body.dataset.mapReady = String(Math.round(performance.now()));
        document.body.dataset.points = String(n);
      }
    }
    drawOverlay();
  }

  // Zoomed in until at most ATLAS_MAX points are in view, some points become their thumbnails: picked
  // in a fixed pseudo-random order (so they stay put while the map pans), each only where its square
  // overlaps none already placed; the others stay dots.
  const ATLAS_MAX = 4000, THUMBS_MAX = 400;
  let thumbs = [];
  const rank = (row) => Math.imul(S.map.id[row], 2654435761) >>> 0;
  function pickThumbnails(rows, side) {
    const w = canvas.clientWidth, ht = canvas.clientHeight, gap = side + 4, cells = new Map(), placed = [];
    const order = rows.filter((row) => View.shows(row) && (S.focus === null || S.map.cluster[row] === S.focus));
    order.sort((a, b) => rank(a) - rank(b));
    for (const row of order) {
      const [sx, sy] = toScreen(S.map.x[row], S.map.y[row]);
      if (sx < -side / 2 || sy < -side / 2 || sx > w + side / 2 || sy > ht + side / 2) continue;
      const cx = Math.floor(sx / gap) + 4096, cy = Math.floor(sy / gap) + 4096;
      let free = true;
      for (let dx = -1; dx <= 1 && free; dx++) {
        for (let dy = -1; dy <= 1 && free; dy++) {
          const near = cells.get((cx + dx) * 16384 + cy + dy);
          if (near && near.some(([px, py]) => Math.abs(px - sx) < gap && Math.abs(py - sy) < gap)) free = false;
        }
      }
      if (!free) continue;
      const key = cx * 16384 + cy;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push([sx, sy]);
      placed.push({ row, sx, sy });
      if (placed.length >= THUMBS_MAX) break;
    }
    return placed;
  }
  function visibleRows(limit) {
    const map = S.map;
    if (!map) return [];
    const [x0, y1] = toWorld(0, 0), [x1, y0] = toWorld(canvas.clientWidth, canvas.clientHeight);
    return map.grid.within(x0, y0, x1, y1, limit + 1);
  }

  function drawOverlay(shape) {
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    const rows = visibleRows(ATLAS_MAX);
    thumbs = [];
    if (rows.length && rows.length <= ATLAS_MAX && pixelsPerUnit() > 0) {
      const side = Math.max(40, Math.min(96, 0.5 * Math.sqrt(canvas.clientWidth * canvas.clientHeight / rows.length)));
      const colourOf = View.colourer();
      thumbs = pickThumbnails(rows, side);
      for (const { row, sx, sy } of thumbs) {
        const sheet = sheetImage(Math.floor(row / PER_SHEET)), tile = row % PER_SHEET;
        ctx.fillStyle = `rgb(${colourOf(row).join(",")})`;  // the frame carries the point's colour
        ctx.fillRect(sx - side / 2 - 2, sy - side / 2 - 2, side + 4, side + 4);
        if (sheet.complete && sheet.naturalWidth) {
          ctx.drawImage(sheet, (tile % PER_ROW) * TILE, Math.floor(tile / PER_ROW) * TILE, TILE, TILE, sx - side / 2, sy - side / 2, side, side);
        }
      }
      for (const t of thumbs) t.side = side;
    }
    if (thumbs.length) document.body.dataset.atlas = String(thumbs.length); else delete document.body.dataset.atlas;
    drawLabels();
    if (S.marker) {
      const [sx, sy] = toScreen(S.marker[0], S.marker[1]);
      ctx.lineWidth = 3; ctx.strokeStyle = "#111";
      ctx.beginPath(); ctx.arc(sx, sy, 12, 0, 2 * Math.PI); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(sx - 18, sy); ctx.lineTo(sx + 18, sy); ctx.moveTo(sx, sy - 18); ctx.lineTo(sx, sy + 18); ctx.stroke();
    }
    if (shape && shape.length > 1) {
      ctx.lineWidth = 1.5; ctx.strokeStyle = "#1a73e8"; ctx.fillStyle = "rgba(26,115,232,.08)";
      ctx.beginPath();
      shape.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.closePath(); ctx.fill(); ctx.stroke();
    }
  }

  // Cluster names on the map, biggest clusters first; a label that would overlap one already placed
  // (or leave the view) is skipped, so zooming in makes room for more. Text grows with the zoom.
  // With a coarser level of the tree (LEVEL.labelLevel, tree.js) its nodes' names come first, larger;
  // the clusters' own names, smaller, join them once zoomed in past FINE_ZOOM.
  let placed = [], labelsOn = true, coarseCache = null;
  const LABEL_CHARS = 30;  // longer names ("mixed: a, b, c") are cut: the list and tooltip show them whole
  const FINE_ZOOM = 1.8;   // about twice the whole map's zoom (0.92)
  function drawLabels() {
    placed = [];
    if (!labelsOn || !S.anchors) return;
    const level = LEVEL.labelLevel(), coarse = level ? coarseAnchors(level) : [];
    const zoom = Math.log2(1 + cam.k);
    const alone = new Set(coarse.filter((a) => a.leaves.length === 1).map((a) => a.leaves[0]));  // a cluster that is a node of the cut
    placeLabels(coarse, Math.round(Math.min(28, Math.max(15, 14 + 2 * zoom))), "coarse");
    if (!coarse.length || cam.k >= FINE_ZOOM) {
      placeLabels(S.anchors.filter((a) => !alone.has(a.cluster)), Math.round(Math.min(20, Math.max(11, 10 + 2 * zoom))), "fine");
    }
    ctx.globalAlpha = 1;
    document.body.dataset.labels = String(placed.length);
    document.body.dataset.labelLevel = level ? String(level) : "";
  }
  function placeLabels(anchors, px, level) {
    const w = canvas.clientWidth, ht = canvas.clientHeight;
    ctx.font = `${level === "coarse" ? 700 : 600} ${px}px system-ui, sans-serif`;
    ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.lineJoin = "round";
    for (const { cluster, leaves, name, node, x, y } of anchors) {
      const [sx, sy] = toScreen(x, y);
      const members = leaves || [cluster], full = name || clusterLabel(cluster);
      const text = full.length > LABEL_CHARS ? full.slice(0, LABEL_CHARS - 1) + "…" : full, half = ctx.measureText(text).width / 2 + 3;
      const box = [sx - half, sy - px * 0.7, sx + half, sy + px * 0.7];
      if (box[0] < 0 || box[1] < 0 || box[2] > w || box[3] > ht) continue;
      if (members.every((c) => View.countOf(c) === 0)) continue;  // every point of it filtered out
      if (placed.some((b) => b.box[0] < box[2] && box[0] < b.box[2] && b.box[1] < box[3] && box[1] < b.box[3])) continue;
      const dim = S.focus !== null && !members.includes(S.focus);
      ctx.globalAlpha = dim ? 0.35 : 1;
      ctx.lineWidth = level === "coarse" ? 4.5 : 3.5; ctx.strokeStyle = "rgba(255,255,255,.92)"; ctx.strokeText(text, sx, sy);
      ctx.fillStyle = "#1d232a"; ctx.fillText(text, sx, sy);
      placed.push({ cluster: members.length === 1 ? members[0] : null, node: node ?? null, clusters: members, text, box, px, level });
    }
  }
  // The cut's nodes placed as labelAnchors places clusters: at the median of their leaves' sampled points.
  function coarseAnchors(k) {
    if (coarseCache && coarseCache.k === k && coarseCache.tree === LEVEL.tree && coarseCache.anchors === S.anchors) return coarseCache.list;
    const rowsOf = new Map(S.anchors.map((a) => [a.cluster, a.rows]));
    const median = (values) => { values.sort((a, b) => a - b); return values[values.length >> 1]; };
    const list = [];
    for (const { node, leaves } of LEVEL.groups(k)) {
      const rows = leaves.flatMap((leaf) => rowsOf.get(leaf) || []);
      if (!rows.length) continue;
      const step = Math.max(1, Math.floor(rows.length / 2000)), sample = rows.filter((_, i) => i % step === 0);
      list.push({ node: node.id, leaves, name: leaves.length === 1 ? clusterLabel(leaves[0]) : node.name,
        x: median(sample.map((i) => S.map.x[i])), y: median(sample.map((i) => S.map.y[i])) });
    }
    coarseCache = { k, tree: LEVEL.tree, anchors: S.anchors, list };
    return list;
  }
  const labelsButton = $("#labels");
  labelsButton.addEventListener("click", () => {
    labelsOn = !labelsOn;
    labelsButton.classList.toggle("on", labelsOn);
    drawOverlay();
  });

  // Sprite sheets of the atlas (see web/atlas.py): map rows come in Z-order, sheet s holds rows s*256...
  const PER_ROW = 16, PER_SHEET = 256, TILE = 64;
  function sheetImage(sheet) {
    let image = sheets.get(sheet);
    if (!image) {
      if (sheets.size > 64) sheets.delete(sheets.keys().next().value);  // oldest first
      image = new Image();
      image.onload = () => drawOverlay();
      image.src = `/api/runs/${encodeURIComponent(S.run)}/atlas/${sheet}`;
      sheets.set(sheet, image);
    }
    return image;
  }

  // -- interaction -----------------------------------------------------------------------------------
  let drag = null;
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const [wx, wy] = toWorld(event.clientX - rect.left, event.clientY - rect.top);
    const factor = Math.exp(-event.deltaY * 0.0015);
    cam.k = Math.min(5000, Math.max(0.2, cam.k * factor));
    const [nx, ny] = toWorld(event.clientX - rect.left, event.clientY - rect.top);
    cam.cx += wx - nx; cam.cy += wy - ny;
    draw();
  }, { passive: false });

  canvas.addEventListener("pointerdown", (event) => {
    const rect = canvas.getBoundingClientRect();
    const point = [event.clientX - rect.left, event.clientY - rect.top];
    drag = { start: point, last: point, shape: [point], moved: false };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    const rect = canvas.getBoundingClientRect();
    const point = [event.clientX - rect.left, event.clientY - rect.top];
    if (!drag) return hover(point);
    drag.moved = drag.moved || Math.hypot(point[0] - drag.start[0], point[1] - drag.start[1]) > 3;
    if (mode === "pan") {
      const ppu = pixelsPerUnit();
      cam.cx -= (point[0] - drag.last[0]) / ppu; cam.cy += (point[1] - drag.last[1]) / ppu;
      draw();
    } else if (mode === "box") {
      const [x0, y0] = drag.start;
      drag.shape = [[x0, y0], [point[0], y0], point, [x0, point[1]]];
      drawOverlay(drag.shape);
    } else {
      drag.shape.push(point);
      drawOverlay(drag.shape);
    }
    drag.last = point;
    $("#tip").hidden = true;
  });
  canvas.addEventListener("pointerup", () => {
    const done = drag;
    drag = null;
    if (!done) return;
    if (!done.moved) {
      const row = nearest(done.start);
      if (row !== null) showImage(S.map.id[row]);
      return;
    }
    if (mode !== "pan" && done.shape.length > 2) select(done.shape.map(([px, py]) => toWorld(px, py)));
    drawOverlay();
  });
  canvas.addEventListener("pointerleave", () => { $("#tip").hidden = true; });

  function nearest([px, py]) {
    if (!S.map) return null;
    const radius = Math.max(6, pointSize()) / pixelsPerUnit();
    const [wx, wy] = toWorld(px, py);
    return S.map.grid.nearest(wx, wy, radius, View.shows);
  }

  function hover(point) {
    const tip = $("#tip");
    const row = nearest(point);
    if (row === null) { tip.hidden = true; return; }
    const id = S.map.id[row], cluster = S.map.cluster[row];
    const image = tip.querySelector("img");
    const src = `/api/images/${id}/thumbnail`;
    if (image.getAttribute("src") !== src) image.src = src;
    const label = tip.querySelector("span");
    label.dataset.id = id;
    const part = LEVEL.partName(row);  // below the run's clusters: the part of its cluster it is in
    const show = (name) => { if (label.dataset.id === String(id)) label.textContent = `${name} · ${part ? `${cluster} · ${part}` : clusterLabel(cluster)}`; };
    show(fileNameOf(id, show));
    tip.hidden = false;
    const x = Math.min(point[0] + 14, canvas.clientWidth - 150), y = Math.min(point[1] + 14, canvas.clientHeight - 160);
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }

  // Select what lies in a polygon (world coordinates), every point of it: the filters decide what is
  // shown of it. The polygon is first thinned to 64 corners and rounded as the link writes it, so a
  // link's sel= selects the same points.
  const SHAPE_CORNERS = 64;
  function select(polygon) {
    const step = Math.ceil(polygon.length / SHAPE_CORNERS);
    const shape = polygon.filter((_, i) => i % step === 0).map(([x, y]) => [Number(x.toFixed(5)), Number(y.toFixed(5))]);
    if (shape.length < 3 || !S.map) return;
    const xs = shape.map((p) => p[0]), ys = shape.map((p) => p[1]);
    const candidates = S.map.grid.within(Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys), Infinity);
    const rows = candidates.filter((row) => inside(S.map.x[row], S.map.y[row], shape));
    rows.sort((a, b) => a - b);
    S.selection = Int32Array.from(rows);
    S.shape = shape;
    S.focus = null;
    recolour();
    renderClusters();  // no cluster is the open one now
    showSelection();
  }
  // A link's sel= outline: true when it selected, false for a malformed one (the caller shows the overview).
  const selectParam = (text) => {
    const values = String(text || "").split(",").map(Number), shape = [];
    for (let i = 0; i + 1 < values.length; i += 2) shape.push([values[i], values[i + 1]]);
    if (shape.length < 3 || !values.every(Number.isFinite)) return false;
    select(shape);
    return true;
  };

  function inside(x, y, polygon) {
    let hit = false;
    for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
      const [xi, yi] = polygon[i], [xj, yj] = polygon[j];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  }

  for (const button of document.querySelectorAll("#tools [data-mode]")) {
    button.addEventListener("click", () => {
      mode = button.dataset.mode;
      for (const other of document.querySelectorAll("#tools [data-mode]")) other.classList.toggle("on", other === button);
    });
  }
  $("#reset").addEventListener("click", () => { Object.assign(cam, HOME); draw(); });

  // Show a cluster whole: the camera frames its points' bounding box, with a margin.
  function fitCluster(cluster) {
    const map = S.map;
    if (!map) return;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < map.n; i++) {
      if (map.cluster[i] !== cluster) continue;
      const x = map.x[i], y = map.y[i];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    if (x0 === Infinity) return;
    const [ax, ay] = aspect();
    const span = Math.max((x1 - x0) * ax, (y1 - y0) * ay, 0.02);
    Object.assign(cam, { k: Math.min(5000, 0.85 * 2 / span), cx: (x0 + x1) / 2, cy: (y0 + y1) / 2 });
    draw();
  }
  window.addEventListener("resize", draw);

  // Mean milliseconds of one full redraw, waited for on the GPU (bench/web.py reads it).
  // ``moving``: the frames drawn while panning or zooming (the level of detail), else full frames.
  function timeRedraws(count, moving = false) {
    const pixel = new Uint8Array(4), started = performance.now();
    const budget = moving && msPerPoint > 0 ? Math.max(50000, Math.floor(FRAME_MS / msPerPoint)) : n;
    for (let i = 0; i < count; i++) {
      cam.cx += 1e-4;
      render(budget);
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
    }
    return (performance.now() - started) / count;
  }

  compile();
  const camera = () => ({ ...cam });
  window.imgclusterMap = { timeRedraws, camera, toScreen, labels: () => placed.map((p) => ({ ...p })),
    thumbnails: () => thumbs.map(({ row, sx, sy, side }) => ({ id: S.map.id[row], x: sx, y: sy, side })),
    inView: () => visibleRows(ATLAS_MAX).length };
  return { load, recolour, draw, drawOverlay, fitCluster, cameraParam, setCamera, select: selectParam };
})();

// A uniform grid over the world square: nearest point and points in a rectangle without scanning all n.
function buildGrid(x, y, n) {
  const G = Math.max(16, Math.min(1024, Math.round(Math.sqrt(n / 4))));
  const cellOf = (v) => Math.min(G - 1, Math.max(0, Math.floor((v + 1) / 2 * G)));
  const cells = new Int32Array(n), counts = new Int32Array(G * G + 1);
  for (let i = 0; i < n; i++) { cells[i] = cellOf(y[i]) * G + cellOf(x[i]); counts[cells[i] + 1]++; }
  for (let c = 0; c < G * G; c++) counts[c + 1] += counts[c];
  const start = counts.slice(), order = new Int32Array(n), fill = counts.slice();
  for (let i = 0; i < n; i++) order[fill[cells[i]]++] = i;
  return {
    nearest(wx, wy, radius, accept = () => true) {
      let best = null, bestD = radius * radius;
      for (let cy = cellOf(wy - radius); cy <= cellOf(wy + radius); cy++) {
        for (let cx = cellOf(wx - radius); cx <= cellOf(wx + radius); cx++) {
          const c = cy * G + cx;
          for (let k = start[c]; k < start[c + 1]; k++) {
            const i = order[k], d = (x[i] - wx) ** 2 + (y[i] - wy) ** 2;
            if (d <= bestD && accept(i)) { bestD = d; best = i; }
          }
        }
      }
      return best;
    },
    within(x0, y0, x1, y1, limit) {
      const found = [];
      for (let cy = cellOf(y0); cy <= cellOf(y1); cy++) {
        for (let cx = cellOf(x0); cx <= cellOf(x1); cx++) {
          const c = cy * G + cx;
          for (let k = start[c]; k < start[c + 1]; k++) {
            const i = order[k];
            if (x[i] >= x0 && x[i] <= x1 && y[i] >= y0 && y[i] <= y1) {
              found.push(i);
              if (found.length >= limit) return found;
            }
          }
        }
      }
      return found;
    },
  };
}

async function loadMap(key) {
  const buffer = await (await api(`/runs/${encodeURIComponent(key)}/map`)).arrayBuffer();
  const n = buffer.byteLength / 16;
  const rawX = new Float32Array(buffer, 0, n), rawY = new Float32Array(buffer, 4 * n, n);
  const cluster = new Int32Array(buffer, 8 * n, n), id = new Int32Array(buffer, 12 * n, n);
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (let i = 0; i < n; i++) {
    const a = rawX[i], b = rawY[i];
    if (a < minX) minX = a; if (a > maxX) maxX = a; if (b < minY) minY = b; if (b > maxY) maxY = b;
  }
  const half = Math.max(maxX - minX, maxY - minY, 1e-9) / 2, mx = (minX + maxX) / 2, my = (minY + maxY) / 2;
  const x = new Float32Array(n), y = new Float32Array(n);
  for (let i = 0; i < n; i++) { x[i] = (rawX[i] - mx) / half; y[i] = (rawY[i] - my) / half; }
  S.map = { n, x, y, cluster, id, grid: buildGrid(x, y, n), scale: { mx, my, half } };
  S.anchors = null;
  S.rowOfId = null;
  Map2D.load(S.map);
  // Labels come after the first frame (this rAF runs after the map's own), so they never delay it.
  const map = S.map;
  requestAnimationFrame(() => setTimeout(() => {
    if (S.map !== map) return;
    S.anchors = labelAnchors(map);
    Map2D.drawOverlay();
  }));
}

function clusterLabel(cluster) {
  const name = S.names.get(cluster);
  if (cluster < 0) return "unclustered";
  return name && name !== `cluster ${cluster}` ? `${cluster} · ${name}` : `cluster ${cluster}`;
}

// Images' file names (the map carries only catalogue ids, which read like file numbers but are not):
// fetched in batches, cached for the session. ``fileNames(ids)`` resolves when all are known.
const knownNames = new Map();
async function fileNames(ids) {
  const missing = [...new Set(ids)].filter((id) => !knownNames.has(id));
  for (let start = 0; start < missing.length; start += 500) {
    const found = await getJSON(`/images?ids=${missing.slice(start, start + 500).join(",")}`);
    for (const image of found.images) knownNames.set(image.id, image.name);
  }
  return ids.map((id) => knownNames.get(id) ?? `image ${id}`);
}
function fileNameOf(id, then) {
  if (knownNames.has(id)) return knownNames.get(id);
  fileNames([id]).then(([name]) => then(name)).catch(() => {});
  return "…";
}

// Where each cluster's label goes: the median of (a sample of) its points, which, unlike the mean,
// stays inside a curved or two-lobed cluster more often. Biggest clusters first: they win overlaps.
function labelAnchors(map) {
  const rows = new Map(), stride = Math.max(1, Math.floor(map.n / 200000));  // ~200k points are plenty
  for (let i = 0; i < map.n; i += stride) {
    const c = map.cluster[i];
    if (c < 0) continue;
    if (!rows.has(c)) rows.set(c, []);
    rows.get(c).push(i);
  }
  const median = (values) => { values.sort((a, b) => a - b); return values[values.length >> 1]; };
  const anchors = [];
  for (const [cluster, members] of rows) {
    const step = Math.max(1, Math.floor(members.length / 2000));
    const sample = members.filter((_, k) => k % step === 0);
    anchors.push({ cluster, size: members.length * stride, rows: members, x: median(sample.map((i) => map.x[i])), y: median(sample.map((i) => map.y[i])) });
  }
  return anchors.sort((a, b) => b.size - a.size || a.cluster - b.cluster);
}

function rowOfId(id) {
  if (!S.rowOfId) { S.rowOfId = new Map(); S.map.id.forEach((value, row) => S.rowOfId.set(value, row)); }
  return S.rowOfId.get(id);
}

// -- runs ------------------------------------------------------------------------------------------
function runLabel(run) {
  const date = new Date(run.created_at * 1000).toISOString().slice(0, 16).replace("T", " ");
  const edit = run.edit ? ` · ${run.edit.action} of ${run.parent}` : run.parent ? ` · from ${run.parent}` : "";
  return `${run.key} · ${date} · ${run.method || "?"} · ${run.n_clusters} clusters${edit}`;
}

async function loadRuns() {
  S.runs = await getJSON("/runs");
  const select = $("#run"), compare = $("#compare");
  select.replaceChildren(...S.runs.map((run) => h("option", { value: run.key }, runLabel(run))));
  compare.replaceChildren(h("option", { value: "" }, "—"), ...S.runs.map((run) => h("option", { value: run.key }, run.key)));
  if (!S.runs.length) status("No runs in this workspace yet: run `imgcluster cluster PATH` first.", true);
}

async function openRun(key, then = {}) {
  S.run = key;
  $("#run").value = key;
  S.focus = null; S.selection = null; S.shape = null; S.marker = null; S.picked.clear();
  S.mergePick.clear(); togglePick(null, false);  // the merge bar goes with the picks
  await Promise.all([loadClusters(), loadMap(key)]);
  await LEVEL.reset(key);  // recolours the map at the finest level
  const facets = View.load(key).then(() => { if (S.run === key && View.readViewHash(then)) View.apply({ refresh: false }); });
  if (then.colour || then.minp || then.how || then.folder || then.video !== undefined || then.from || then.to || then.mins) await facets;  // a link's view
  else facets.catch(fail);
  if (then.camera) Map2D.setCamera(then.camera);  // before the page: a cluster's then keeps the link's zoom
  writeHash(then);
  if (then.image) await showImage(Number(then.image));
  else if (then.cluster !== undefined && then.cluster !== "") await showCluster(Number(then.cluster), { zoom: !then.camera });
  else if (!(then.sel && Map2D.select(then.sel))) await showOverview();  // a malformed sel= too
  if (S.run === key) document.body.dataset.opened = key;  // the run's list, map, tree and view are drawn
}

async function loadClusters() {
  const data = await getJSON(`/clusters?run=${encodeURIComponent(S.run)}`);
  S.clusters = data.clusters;
  S.names = new Map(S.clusters.map((c) => [c.cluster, c.name]));
  PALETTE.byCluster = new Map(S.clusters.map((c) => [c.cluster, hexToRGB(c.colour)]));
  renderClusters();
  Map2D.drawOverlay();  // the map's labels carry the names
}

// The cluster list: a row per cluster; at a coarser level of the tree (LEVEL, tree.js), a row per node
// of the cut, collapsed by default, that opens (click, Enter) onto its clusters' rows.
function renderClusters() {
  const list = $("#clusters"), rows = new Map(S.clusters.map((c) => [c.cluster, clusterRow(c)]));
  const groups = LEVEL.groups(LEVEL.k), parts = LEVEL.parts(LEVEL.k);
  if (parts) {  // below the run's clusters: a split cluster's row, then a row per part of it at this level
    return list.replaceChildren(...[...rows].flatMap(([cluster, row]) =>
      [row, ...(parts.get(cluster) || []).map((node) => partRow(node, cluster))]));
  }
  if (!groups) return list.replaceChildren(...rows.values());
  const order = new Map(S.clusters.map((c, i) => [c.cluster, i])), grouped = new Set();
  const items = groups.flatMap(({ node, leaves }) => {
    const members = leaves.filter((leaf) => rows.has(leaf)).sort((a, b) => order.get(a) - order.get(b));
    members.forEach((leaf) => grouped.add(leaf));
    if (leaves.length === 1) return members.map((leaf) => rows.get(leaf));  // a cluster on its own at this level
    const open = LEVEL.open.has(node.id);
    for (const leaf of members) { rows.get(leaf).hidden = !open; rows.get(leaf).classList.add("leaf"); }
    return [nodeRow(node, members, open), ...members.map((leaf) => rows.get(leaf))];
  });
  list.replaceChildren(...items, ...[...rows].filter(([cluster]) => !grouped.has(cluster)).map(([, row]) => row));
}

function nodeRow(node, members, open) {
  const counts = members.map(View.countOf), shown = counts.includes(null) ? null : counts.reduce((a, b) => a + b, 0);
  const toggle = () => { if (LEVEL.open.has(node.id)) LEVEL.open.delete(node.id); else LEVEL.open.add(node.id); renderClusters(); };
  const item = h("li", { class: "cluster node" + (shown === 0 ? " empty" : ""), "data-node": node.id, tabindex: "0", role: "button", "aria-expanded": String(open),
    title: `tree node ${node.id} · ${node.name} · ${node.size} images in ${members.length} clusters · click or Enter to ${open ? "close" : "open"}` },
  h("span", { class: "sw", style: `background:${cssOf(LEVEL.tree.leafOf.get(node.id))}` }),
  h("span", { class: "twisty", "aria-hidden": "true" }, open ? "▾" : "▸"),
  h("span", { class: "cid" }),
  h("span", { class: "name" }, node.name),
  h("span", { class: "size" }, shown === null ? String(node.size) : `${shown}/${node.size}`),
  h("span"), h("span"));
  item.addEventListener("click", toggle);
  item.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault();
    toggle();
    const again = $(`#clusters li.node[data-node="${node.id}"]`);
    if (again) again.focus();  // the list was drawn anew: the keys stay on this row
  });
  return item;
}

// A node of the slider's cut inside a cluster (a part, or parts of it): named as the tree names it, in
// the colour its points show; it opens its cluster.
function partRow(node, cluster) {
  const whole = LEVEL.tree.nodes.get(cluster).name;
  const item = h("li", { class: "cluster part leaf", "data-node": node.id, "data-in": cluster,
    title: `tree node ${node.id} · ${node.name} · ${node.size} images, a part of cluster ${cluster} · click to open the cluster` },
  h("span", { class: "sw", style: `background:${cssOf(LEVEL.tree.leafOf.get(node.id))}` }),
  h("span"), h("span", { class: "cid" }),
  // "<cluster's name> · part 1" cut short would read as its cluster: the row, under its cluster's, shows the part.
  h("span", { class: "name", "data-name": node.name }, node.name.startsWith(whole) ? "… " + node.name.slice(whole.length).trim() : node.name),
  h("span", { class: "size" }, String(node.size)),
  h("span"), h("span"));
  item.addEventListener("click", () => showCluster(cluster));
  return item;
}

function clusterRow(c) {
  const stab = c.stability === null || c.stability === undefined ? "" : `stab ${c.stability.toFixed(2)}`;
  const item = h("li", { class: "cluster" + (S.focus === c.cluster ? " active" : "") + (View.countOf(c.cluster) === 0 ? " empty" : ""), "data-cluster": c.cluster,
    title: `${c.name} · ${c.size} images · mean membership ${c.mean_membership_probability.toFixed(2)}${c.named_by ? " · named by " + c.named_by : ""}${c.name_level ? " · " + c.name_level : ""}` },
  h("span", { class: "sw", style: `background:${cssOf(c.cluster)}` }),
  c.cluster >= 0 ? h("input", { type: "checkbox", class: "pick", "aria-label": `pick cluster ${c.cluster} to merge`, checked: S.mergePick.has(c.cluster),
    onclick: (event) => { event.stopPropagation(); togglePick(c.cluster, event.target.checked); } }) : h("span"),
  h("span", { class: "cid", title: `cluster id ${c.cluster}` }, c.cluster >= 0 ? String(c.cluster) : "–"),
  h("span", { class: "name" }, c.name, c.name_level === "unsure" ? h("span", { class: "badge unsure", title: "the namer is unsure of this name" }, "unsure") : "", c.proposed ? h("span", { class: "badge proposed", title: "proposed by an update: accept or reject it in its panel" }, "proposed") : ""),
  h("span", { class: "size", title: View.countOf(c.cluster) === null ? "images" : "images shown by the filters of all its images" },
    View.countOf(c.cluster) === null ? String(c.size) : `${View.countOf(c.cluster)}/${c.size}`),
  h("span", { class: "stab" + (c.unstable ? " unstable" : "") }, stab),
  c.cluster >= 0 ? h("button", { type: "button", class: "ren", title: "Rename", "aria-label": `rename cluster ${c.cluster}`,
    onclick: (event) => { event.stopPropagation(); startRename(item, c); } }, "✎") : h("span"));
  item.addEventListener("click", () => showCluster(c.cluster));
  return item;
}

// The merge bar: which picked cluster survives (its id and name) is chosen, not implied by the order
// of the ticks; the default is a cluster someone named, else the biggest. Merging asks to confirm.
function togglePick(cluster, on) {
  if (on) S.mergePick.add(cluster); else S.mergePick.delete(cluster);
  if (!S.mergePick.size) delete $("#merge-into").dataset.chosen;
  $("#merge-bar").hidden = S.mergePick.size < 2;
  $("#merge-confirm").hidden = true;
  const picked = S.clusters.filter((c) => S.mergePick.has(c.cluster));
  const into = $("#merge-into"), before = into.dataset.chosen ? Number(into.dataset.chosen) : null;  // the user's choice
  const best = [...picked].sort((a, b) => (b.named_by === "manual") - (a.named_by === "manual") || b.size - a.size)[0];
  into.replaceChildren(...picked.map((c) => h("option", { value: c.cluster, selected: S.mergePick.has(before) ? c.cluster === before : best && c.cluster === best.cluster },
    `${c.cluster} · ${c.name} (${c.size})`)));
  $("#merge").textContent = `Merge ${S.mergePick.size} clusters…`;
}

// After an edit: the header says what was made, with Undo (back to the run it was derived from).
function offerUndo(text, parent) {
  status(text);
  const undo = h("button", { type: "button", id: "undo", title: `back to run ${parent}; the edited run stays in the list` }, "Undo");
  undo.addEventListener("click", async () => {
    try {
      const edited = S.run;
      await openRun(parent);
      status(`back on run ${parent} (the edit stays as run ${edited})`);
    } catch (error) { fail(error); }
  });
  $("#status").prepend(undo, " ");  // first: a long message is cut off at its end
}

function startRename(item, c) {
  const slot = item.querySelector(".name");
  const input = h("input", { type: "text", value: c.cluster >= 0 && c.named_by ? c.name : "", placeholder: c.name, "aria-label": "new name" });
  slot.replaceChildren(input);
  input.focus();
  input.addEventListener("click", (event) => event.stopPropagation());
  input.addEventListener("keydown", async (event) => {
    if (event.key === "Escape") return renderClusters();
    if (event.key !== "Enter") return;
    try {
      status("renaming…");
      await sendJSON(`/clusters/${c.cluster}/name?run=${encodeURIComponent(S.run)}`, "PUT", { name: input.value });
      await loadClusters();
      status(`cluster ${c.cluster} renamed`);
      if (S.focus === c.cluster) $("#panel-title").textContent = S.names.get(c.cluster);
    } catch (error) { fail(error); }
  });
}

$("#merge").addEventListener("click", () => {
  const into = Number($("#merge-into").value), others = [...S.mergePick].filter((c) => c !== into);
  const sizes = S.clusters.filter((c) => S.mergePick.has(c.cluster)).reduce((sum, c) => sum + c.size, 0);
  $("#merge-confirm-text").textContent = `Merge ${others.map(clusterLabel).join(", ")} into ${clusterLabel(into)} ` +
    `(${sizes} images)? It becomes a new run derived from ${S.run}, which stays as it is.`;
  $("#merge-confirm").hidden = false;
});
$("#merge-into").addEventListener("change", (event) => { event.target.dataset.chosen = event.target.value; $("#merge-confirm").hidden = true; });
$("#merge-cancel").addEventListener("click", () => { $("#merge-confirm").hidden = true; });
$("#merge-go").addEventListener("click", async () => {
  const clusters = [...S.mergePick], into = Number($("#merge-into").value), name = clusterLabel(into);
  try {
    status("merging…");
    const result = await sendJSON("/clusters/merge", "POST", { run: S.run, clusters, into });
    await loadRuns();
    await openRun(result.run, { cluster: into });
    offerUndo(`merged into ${name}: new run ${result.run} (from ${result.parent})`, result.parent);
  } catch (error) { fail(error); }
});
$("#merge-clear").addEventListener("click", () => { S.mergePick.clear(); togglePick(null, false); renderClusters(); });

// -- the panel: cluster grid, selection, image page, run info, comparison, search, upload ----------
function panel(title, actions = [], ...body) {
  S.again = null;  // a page that redraws itself under new filters sets it again after this
  $("#panel-title").textContent = title;
  $("#panel-actions").replaceChildren(...actions);
  $("#panel-body").replaceChildren(...body);
  $("#panel-body").scrollTop = 0;
}

function figure(id, caption, onPick) {
  const node = h("figure", { "data-id": id, class: S.picked.has(id) ? "picked" : null, tabindex: "0" },
    h("img", { src: `/api/images/${id}/thumbnail`, loading: "lazy", alt: caption }),
    h("figcaption", { title: caption }, caption));
  node.addEventListener("click", (event) => {
    if (event.shiftKey || event.ctrlKey || event.metaKey || S.picking) {
      if (S.picked.has(id)) S.picked.delete(id); else S.picked.add(id);
      node.classList.toggle("picked", S.picked.has(id));
      if (onPick) onPick();
    } else {
      S.byKeyboard = event.detail === 0;  // Enter (a click without a pointer): the keys go on in the next page
      showImage(id);
    }
  });
  node.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); node.click(); }
  });
  return node;
}

// A grid that asks ``page(offset)`` for more figures as its end scrolls into view.
function endlessGrid(page) {
  const grid = h("div", { class: "grid" }), sentinel = h("div", { class: "sentinel" });
  let offset = 0, busy = false, done = false;
  const more = async () => {
    if (busy || done) return;
    busy = true;
    try {
      const figures = await page(offset);
      grid.append(...figures);
      offset += figures.length;
      done = figures.length === 0;
    } catch (error) { fail(error); done = true; }
    busy = false;
    if (!done && sentinel.getBoundingClientRect().top < $("#panel-body").getBoundingClientRect().bottom + 400) more();
  };
  new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) more(); },
    { root: $("#panel-body"), rootMargin: "400px" }).observe(sentinel);
  more();
  return [grid, sentinel];
}

function moveControls(after) {
  const target = h("select", { "aria-label": "move to cluster" },
    ...S.clusters.map((c) => h("option", { value: c.cluster }, `${c.cluster} · ${c.name}`)));
  const count = h("span", {}, "");
  const update = () => { count.textContent = `${S.picked.size} picked`; };
  const pickToggle = h("button", { type: "button", title: "Click images to pick them (or shift-click)" }, "Pick images");
  pickToggle.addEventListener("click", () => { S.picking = !S.picking; pickToggle.classList.toggle("on", S.picking); pickToggle.textContent = S.picking ? "Picking: on" : "Pick images"; });
  const move = h("button", { type: "button" }, "Move picked to");
  move.addEventListener("click", async () => {
    if (!S.picked.size) return status("Pick images first (shift-click, or 'Pick images').", true);
    const cluster = Number(target.value);
    try {
      status("moving…");
      const result = await sendJSON(`/clusters/${cluster}/images`, "POST", { run: S.run, image_ids: [...S.picked] });
      S.picking = false;
      await loadRuns();
      await openRun(result.run, { cluster });
      status(`moved into cluster ${cluster}: new run ${result.run} (from ${result.parent})`);
    } catch (error) { fail(error); }
  });
  update();
  return { controls: [pickToggle, count, move, target], update };
}

async function showCluster(cluster, { zoom = true } = {}) {
  S.focus = cluster; S.selection = null; S.shape = null; S.picked.clear(); S.picking = false;
  Map2D.recolour();
  if (zoom) Map2D.fitCluster(cluster);
  LEVEL.reveal(cluster);  // its tree node opens in the list
  renderClusters();
  writeHash({ cluster });
  const info = S.clusters.find((c) => c.cluster === cluster);
  const { controls, update } = moveControls();
  const summary = info ? h("span", {}, `cluster ${cluster} · ${info.size} images · mean membership ${info.mean_membership_probability.toFixed(2)}` +
    (info.stability !== null ? ` · stability ${info.stability.toFixed(2)}` : "")) : null;
  // Under filters the grid is the cluster's shown images, from the map's rows; else the server pages it.
  const filtered = View.active() ? View.rowsOf(cluster) : null;
  const [grid, sentinel] = endlessGrid(filtered ? rowGrid(filtered, (row) => View.probability(row).toFixed(2), update) : async (offset) => {
    const page = await getJSON(`/clusters/${cluster}/images?run=${encodeURIComponent(S.run)}&offset=${offset}&limit=60`);
    return page.images.map((image) => figure(image.id, `${image.name} · ${image.membership_probability.toFixed(2)}`, update));
  });
  grid.id = "cluster-grid";
  if (filtered) grid.dataset.filtered = String(filtered.length);
  grid.dataset.cluster = cluster;
  const review = info && info.proposed ? [
    h("button", { type: "button", id: "accept-proposal", onclick: () => reviewProposal(cluster, "accept") }, "Accept cluster"),
    h("button", { type: "button", id: "reject-proposal", onclick: () => reviewProposal(cluster, "reject") }, "Reject (back to held)"),
  ] : [];
  const splitting = cluster >= 0 ? splitControl(cluster, info ? info.size : 0) : null;
  const exporting = Export.button(() => ({ cluster, label: `cluster-${cluster}`,
    image_ids: filtered ? filtered.map((row) => S.map.id[row]) : undefined }));
  panel(S.names.get(cluster) || `cluster ${cluster}`, [summary, ...review, ...controls, splitting, exporting], grid, sentinel);
}

// Split a cluster into k parts (k-means on its images' embeddings): a new derived run, with Undo.
function splitControl(cluster, size) {
  const k = h("input", { type: "number", id: "split-k", min: "2", max: String(Math.max(2, Math.min(50, size))), value: "2", "aria-label": "parts to split into" });
  const go = h("button", { type: "button", id: "split", title: "Re-cluster this cluster's images into k parts; saved as a new run" }, "Split into");
  go.addEventListener("click", async () => {
    try {
      status(`splitting cluster ${cluster}…`);
      const result = await sendJSON(`/clusters/${cluster}/split`, "POST", { run: S.run, k: Number(k.value) });
      await loadRuns();
      await openRun(result.run, { cluster });
      offerUndo(`split ${clusterLabel(cluster)} into clusters ${result.clusters.join(", ")}: new run ${result.run} (from ${result.parent})`, result.parent);
    } catch (error) { fail(error); }
  });
  return h("span", { class: "split" }, go, k);
}

async function reviewProposal(cluster, verdict) {
  try {
    status(`${verdict === "accept" ? "accepting" : "rejecting"} cluster ${cluster}…`);
    const result = await sendJSON("/clusters/proposals", "POST", { run: S.run, [verdict]: [cluster] });
    await loadRuns();
    await openRun(result.run, verdict === "accept" ? { cluster } : {});
    status(`cluster ${cluster} ${verdict === "accept" ? "accepted" : "rejected"}: new run ${result.run} (from ${result.parent})`);
  } catch (error) { fail(error); }
}

function showSelection() {
  const rows = S.selection.filter(View.shows);  // the selection under the filters; loosening them brings back the rest
  writeHash(S.shape ? { sel: S.shape.flat().join(",") } : {});
  S.picked.clear(); S.picking = false;
  const { controls, update } = moveControls();
  const pickAll = h("button", { type: "button" }, "Pick all");
  pickAll.addEventListener("click", () => {
    for (const row of rows) S.picked.add(S.map.id[row]);
    for (const node of document.querySelectorAll("#panel-body figure")) node.classList.add("picked");
    update();
  });
  const clear = h("button", { type: "button" }, "Clear selection");
  clear.addEventListener("click", () => { S.selection = null; S.shape = null; Map2D.recolour(); showOverview(); });
  const [grid, sentinel] = endlessGrid(rowGrid(rows, (row) => clusterLabel(S.map.cluster[row]), update));
  grid.id = "selection-grid";
  const exporting = Export.button(() => ({ label: "selection", image_ids: Array.from(rows, (row) => S.map.id[row]) }));
  // Split by lasso: the selected images become a cluster of their own, in a new derived run.
  const splitOff = h("button", { type: "button", id: "split-off", title: "Make the selected images a new cluster (a new run; Undo goes back)" }, "Split off as a new cluster");
  splitOff.addEventListener("click", async () => {
    try {
      status("splitting off…");
      const result = await sendJSON("/clusters/new", "POST", { run: S.run, image_ids: Array.from(rows, (row) => S.map.id[row]) });
      await loadRuns();
      await openRun(result.run, { cluster: result.cluster });
      offerUndo(`${rows.length} images split off as cluster ${result.cluster}: new run ${result.run} (from ${result.parent})`, result.parent);
    } catch (error) { fail(error); }
  });
  panel(`${rows.length} images selected on the map`, [pickAll, clear, ...controls, splitOff, exporting], grid, sentinel);
}

// The nearest images a page shows, and under filters only those the filters show (crossfilter): a
// larger pool is asked for then, and the grid says how many of it the filters hid.
const NEAREST = 12, POOL = 100;
function shownOf(found, wanted) {
  if (!View.active()) return { shown: found.slice(0, wanted), hidden: 0 };
  const shown = found.filter((item) => { const row = rowOfId(item.id); return row !== undefined && View.shows(row); });
  return { shown: shown.slice(0, wanted), hidden: found.length - shown.length };
}
function filteredNote(hidden) {
  return hidden ? h("p", { class: "muted filtered-note" }, `${hidden} of the nearest hidden by the filters`) : null;
}

async function showImage(id) {
  writeHash({ image: id });
  try {
    const [image, near] = await Promise.all([
      getJSON(`/images/${id}?run=${encodeURIComponent(S.run)}`),
      getJSON(`/images/${id}/neighbours?run=${encodeURIComponent(S.run)}&k=${View.active() ? POOL : NEAREST}`)]);
    const { shown, hidden } = shownOf(near.neighbours, NEAREST);
    const row = rowOfId(id);
    if (row !== undefined) { S.marker = [S.map.x[row], S.map.y[row]]; Map2D.drawOverlay(); }
    const facts = h("dl", { class: "facts" },
      h("dt", {}, "cluster"), h("dd", {}, image.in_run ? `${image.cluster_name} (cluster ${image.cluster})` : "not in this run"),
      h("dt", {}, "membership probability"), h("dd", { id: "membership" }, image.in_run ? image.membership_probability.toFixed(3) : "—"),
      h("dt", {}, "placed by"), h("dd", {}, image.how || "—"),
      h("dt", {}, "size"), h("dd", {}, `${image.width} × ${image.height} px · ${image.format} · ${(image.size / 1024).toFixed(1)} KB`),
      h("dt", {}, "path"), h("dd", {}, image.path));
    const back = image.in_run ? h("button", { type: "button" }, "Show its cluster") : null;
    if (back) back.addEventListener("click", () => showCluster(image.cluster));
    const grid = h("div", { class: "grid", id: "neighbours", "data-hidden": hidden }, ...shown.map((n) =>
      figure(n.id, `${n.similarity.toFixed(2)} · ${S.names.get(n.cluster) || n.cluster}`)));
    panel(image.name, [back], h("div", { class: "image-page" },
      h("img", { class: "large", src: `/api/images/${id}/file`, alt: image.name }), facts,
      h("h3", {}, "Nearest images"), filteredNote(hidden), grid));
    S.again = () => showImage(id);  // the filters change: the same page, its grid under them
    if (S.byKeyboard) { const first = grid.querySelector("figure"); if (first) first.focus(); }
    S.byKeyboard = false;
  } catch (error) { fail(error); }
}

function showOverview() {
  S.focus = null;
  renderClusters();
  writeHash({});
  const run = S.runs.find((r) => r.key === S.run);
  if (View.active()) {  // the filtered view: its images, cluster by cluster
    const rows = View.rowsOf(null);
    const [grid, sentinel] = endlessGrid(rowGrid(rows, (row) => clusterLabel(S.map.cluster[row])));
    grid.id = "filtered-grid";
    grid.dataset.filtered = String(rows.length);
    const exporting = Export.button(() => ({ label: "filtered", image_ids: rows.map((row) => S.map.id[row]) }));
    return panel(`${rows.length.toLocaleString()} images match the filters`, [exporting], grid, sentinel);
  }
  panel("Clusters", [Export.button(() => ({ label: "all" }))], h("p", {}, `${run ? run.n_images : "?"} images in ${S.clusters.filter((c) => c.cluster >= 0).length} clusters. ` +
    "Click a cluster on the left to see its images, a point on the map to open its image; drag with Box or Lasso to select; " +
    "drop an image anywhere to file it; colour and filter the map with the box above the cluster list."));
}

// A page-by-page grid of map rows, captioned "file · what(row)".
function rowGrid(rows, what, onPick) {
  return async (offset) => {
    const page = Array.from(rows.slice(offset, offset + 60));
    const names = await fileNames(page.map((row) => S.map.id[row]));
    return page.map((row, i) => figure(S.map.id[row], `${names[i]} · ${what(row)}`, onPick));
  };
}

async function showInfo() {
  try {
    const info = await getJSON(`/runs/${encodeURIComponent(S.run)}`);
    const metrics = info.metrics || {};
    const facts = h("dl", { class: "facts", id: "run-info" },
      ...[["key", info.key], ["created", new Date(info.created_at * 1000).toLocaleString()], ["model", `${info.model_name} (${info.model_id})`],
        ["method", (info.config.cluster || {}).method], ["images", info.n_images], ["clusters", info.n_clusters],
        ["unclustered", metrics.noise_fraction !== undefined ? (100 * metrics.noise_fraction).toFixed(1) + "%" : "—"],
        ["silhouette", metrics.silhouette != null ? metrics.silhouette.toFixed(3) + (metrics.silhouette_on ? ` (on the ${metrics.silhouette_on})` : "") : "—"],
        ["derived from", info.parent || "—"], ["edit", info.edit ? JSON.stringify(info.edit).slice(0, 300) : "—"],
        ["workspace", info.workspace]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
    panel(`Run ${info.key}`, [], facts, h("details", {}, h("summary", {}, "Everything stored (JSON)"),
      h("pre", { class: "json" }, JSON.stringify(info, null, 2))));
  } catch (error) { fail(error); }
}

async function showCompare(other) {
  try {
    const c = await getJSON(`/runs/${encodeURIComponent(S.run)}/compare/${encodeURIComponent(other)}`);
    const facts = h("dl", { class: "facts", id: "comparison" },
      ...[["images in both", c.n_common], ["only in " + c.a, c.only_a], ["only in " + c.b, c.only_b], ["ARI", c.ari.toFixed(3)],
        ["NMI", c.nmi.toFixed(3)], ["variation of information", c.variation_of_information.toFixed(3)], ["moved images", c.n_moved]]
        .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
    const named = (names, cluster) => `${cluster} · ${names[String(cluster)] ?? (cluster < 0 ? "unclustered" : "cluster " + cluster)}`;
    const inA = (cluster) => named(c.names_a, cluster), inB = (cluster) => named(c.names_b, cluster);
    const row = (...cells) => h("tr", {}, ...cells.map((cell) => h("td", {}, String(cell))));
    const table = h("table", { class: "data", id: "compare-matching" },
      h("tr", {}, h("th", {}, `cluster of ${c.a}`), h("th", {}, `best match in ${c.b}`), h("th", {}, "images in both"), h("th", {}, "Jaccard")),
      ...c.matching.map((m) => row(inA(m.a), inB(m.b), m.overlap.toLocaleString(), m.jaccard.toFixed(2))));
    const list = (parts, name) => parts.map(([cluster, images]) => `${name(cluster)} (${images.toLocaleString()})`).join(", ");
    const parts = (title, id, head, items, cells) => items.length ? [h("h3", {}, title), h("table", { class: "data", id },
      h("tr", {}, ...head.map((text) => h("th", {}, text))), ...items.map((item) => row(...cells(item))))] : [];
    const splits = parts("Splits", "compare-splits", [`cluster of ${c.a}`, `went to clusters of ${c.b} (images)`], c.splits,
      (split) => [inA(split.cluster), list(split.parts, inB)]);
    const merges = parts("Merges", "compare-merges", [`clusters of ${c.a} (images)`, `merged into cluster of ${c.b}`], c.merges,
      (merge) => [list(merge.parts, inA), inB(merge.cluster)]);
    panel(`${c.a} vs ${c.b}`, [], facts, h("h3", {}, "Matching"), table, ...splits, ...merges);
  } catch (error) { fail(error); }
}

const SEARCHED = 48;  // images a text search shows
async function textSearch(query) {
  try {
    status("searching…");
    const found = await getJSON(`/search?run=${encodeURIComponent(S.run)}&q=${encodeURIComponent(query)}&k=${View.active() ? 4 * SEARCHED : SEARCHED}`);
    status("");
    const { shown, hidden } = shownOf(found.results, SEARCHED);
    panel(`“${query}”`, [], filteredNote(hidden), h("div", { class: "grid", id: "search-results", "data-hidden": hidden }, ...shown.map((r) =>
      figure(r.id, `${r.similarity.toFixed(2)} · ${r.cluster_name}`))));
    S.again = () => textSearch(query);
  } catch (error) { fail(error); panel(`“${query}”`, [], h("p", { class: "error" }, error.message)); }
}

const DOUBTFUL = 0.8;  // a filed upload below this membership probability is shown as a guess

async function fileImage(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    status(`filing ${file.name}…`);
    // A pool beyond the 12 shown: the filters may hide some, now or once changed.
    const result = await getJSON(`/predict?run=${encodeURIComponent(S.run)}&k=${POOL}`, { method: "POST", body: form });
    status("");
    showFiled(file, result);
  } catch (error) { fail(error); }
}

// The filed upload's page; again under the filters when they change (no new upload).
function showFiled(file, result) {
  const { shown, hidden } = shownOf(result.neighbours, NEAREST);
  result.src = result.src || URL.createObjectURL(file);
  if (result.x !== null && S.map) {
    const { mx, my, half } = S.map.scale;
    S.marker = [(result.x - mx) / half, (result.y - my) / half];
    Map2D.drawOverlay();
  }
  // Doubt shows: a held image says so first; a filed one below DOUBTFUL says "with doubt"; a meter for both.
  const p = result.membership_probability;
  const doubt = result.status !== "assigned" ? "held" : p < DOUBTFUL ? "doubtful" : "sure";
  const verdict = result.status === "assigned"
    ? `Filed into ${result.cluster_name} (cluster ${result.cluster})${doubt === "doubtful" ? ", with doubt" : ""} · membership probability ${p.toFixed(2)}`
    : result.status === "unassigned" ? "Held, not filed: it is unlike the run's clusters" : `Skipped: ${result.reason}`;
  const open = result.status === "assigned" ? h("button", { type: "button" }, "Show the cluster") : null;
  if (open) open.addEventListener("click", () => showCluster(result.cluster));
  panel(`Filed: ${file.name}`, [open], h("div", { class: "image-page", id: "predict-result", "data-status": result.status, "data-cluster": result.cluster, "data-doubt": doubt },
    h("img", { class: "large", src: result.src, alt: file.name }),
    h("p", { class: `verdict ${doubt}` }, verdict),
    result.status === "skipped" ? null : h("meter", { min: "0", max: "1", low: String(DOUBTFUL), optimum: "1", value: String(p), title: `membership probability ${p.toFixed(2)}` }),
    h("p", { class: "reason" }, result.reason),
    h("h3", {}, "Nearest images"), filteredNote(hidden), h("div", { class: "grid", id: "filed-neighbours", "data-hidden": hidden }, ...shown.map((n) =>
      figure(n.id, `${n.similarity.toFixed(2)} · ${n.cluster_name}`)))));
  S.again = () => showFiled(file, result);
}

// -- wiring ------------------------------------------------------------------------------------------
$("#run").addEventListener("change", (event) => openRun(event.target.value).catch(fail));
$("#info-button").addEventListener("click", showInfo);
$("#compare").addEventListener("change", (event) => { if (event.target.value) showCompare(event.target.value); });
$("#search-form").addEventListener("submit", (event) => { event.preventDefault(); const q = $("#search").value.trim(); if (q) textSearch(q); });
$("#upload").addEventListener("change", (event) => { if (event.target.files[0]) fileImage(event.target.files[0]); event.target.value = ""; });
window.addEventListener("dragover", (event) => { event.preventDefault(); document.body.classList.add("dragging"); });
window.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
window.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) fileImage(file);
});

$("#error-close").addEventListener("click", hideError);
// Esc closes what is open, innermost first: an error, the tooltip, a selection, an image or a cluster.
window.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  if (!$("#error").hidden) return hideError();
  if (event.target.closest("input, select, textarea")) return;  // a rename's Esc cancels the rename
  $("#tip").hidden = true;
  if (S.selection) { S.selection = null; S.shape = null; Map2D.recolour(); }
  S.marker = null;
  Map2D.drawOverlay();
  showOverview();
  Map2D.recolour();
});

// Arrow keys move the focus through a grid of images (the cluster's, a selection's, an image's nearest
// images): left/right to the previous/next, up/down a row; Enter opens the image, whose nearest images
// then take the keys. An arrow with nothing focused starts at the panel's first image.
function gridStep(figure, key) {
  const figures = [...figure.parentElement.querySelectorAll(":scope > figure")], at = figures.indexOf(figure);
  const top = figures[0].offsetTop, columns = Math.max(1, figures.findIndex((f) => f.offsetTop !== top) === -1 ? figures.length : figures.findIndex((f) => f.offsetTop !== top));
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns }[key];
  return figures[Math.min(figures.length - 1, Math.max(0, at + step))];
}
window.addEventListener("keydown", (event) => {
  if (!event.key.startsWith("Arrow") || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target;
  if (target.closest && target.closest("input, select, textarea, canvas")) return;
  const current = target.closest && target.closest(".grid > figure");
  const next = current ? gridStep(current, event.key) : $("#panel-body .grid > figure");
  if (!next) return;
  event.preventDefault();
  next.focus();
  next.scrollIntoView({ block: "nearest" });
});

// Back and Forward: open the view the link names (run, then image, cluster, selection or the overview; its camera).
window.addEventListener("popstate", () => {
  const wanted = readHash();
  if (!wanted.run) return;
  let going;
  if (wanted.run === S.run && View.readViewHash(wanted, { reset: true })) View.apply({ refresh: false });
  if (wanted.run !== S.run) going = openRun(wanted.run, wanted);
  else {
    Map2D.setCamera(wanted.camera);  // first: the page's own link then matches this entry's (no new entry)
    if (wanted.image) going = showImage(Number(wanted.image));
    else if (wanted.cluster !== undefined && wanted.cluster !== "") going = showCluster(Number(wanted.cluster), { zoom: false });
    else if (!(wanted.sel && Map2D.select(wanted.sel))) { S.selection = null; S.shape = null; showOverview(); Map2D.recolour(); }
  }
  Promise.resolve(going).catch(fail);
});

(async function start() {
  try {
    await loadPalette();
    await loadRuns();
    if (!S.runs.length) return;
    const wanted = readHash();
    const key = S.runs.some((r) => r.key === wanted.run) ? wanted.run : S.runs[0].key;
    await openRun(key, wanted);
    S.ready = true;
    document.body.dataset.ready = "1";
  } catch (error) { fail(error); }
})();
