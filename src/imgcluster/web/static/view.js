// Colour by and filter by what a run knows (web/facets.py): cluster, membership probability, how an
// image was placed, folder, file date, video (key-frames), the cluster's stability. Filters compose; the map, the cluster
// list, the labels and the grids (a cluster's, a selection's, nearest images, search results) follow them (crossfilter). Loaded after app.js: it uses S, Map2D, h, $.
"use strict";

const View = (() => {
  const state = {
    facets: null,          // {n, how, folders, date, probability, day, how_code, folder_code} in map order
    colourBy: "cluster",
    filter: { minProbability: 0, how: null, folder: null, video: null, dateFrom: null, dateTo: null, minStability: 0 },
    mask: null,            // Uint8Array(n): 1 = shown; null = every point shown
    shown: 0,
    clusterCounts: null,   // Map cluster -> points shown, when a filter is on
  };
  // How an image was placed, in colours that keep their meaning from run to run.
  const HOW_COLOURS = { fit: "#4e79a7", filed: "#59a14f", attached: "#f28e2b", duplicate: "#b07aa1", moved: "#ff9da7",
    held: "#e15759", proposed: "#edc948", accepted: "#76b7b2", forced: "#9c755f", split: "#bab0ac" };
  const VIRIDIS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"].map(hexToRGB);
  const GREY = [200, 203, 208];
  const blend = (t) => {
    const x = t * (VIRIDIS.length - 1), i = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - i;
    return VIRIDIS[i].map((v, k) => Math.round(v + (VIRIDIS[i + 1][k] - v) * f));
  };
  // 256 steps, looked up: blending per point took 1.8 s at 1M points.
  const RAMP = Array.from({ length: 256 }, (_, i) => blend(i / 255));
  const ramp = (t) => (Number.isFinite(t) ? RAMP[Math.round(Math.min(1, Math.max(0, t)) * 255)] : GREY);
  const STILLS = "(stills)";  // still images in a link's video= (an empty value would be dropped)
  const dayText = (day) => new Date(day * 86400000).toISOString().slice(0, 10);
  const dayOf = (text) => (text ? Date.parse(text + "T00:00:00Z") / 86400000 : null);

  async function load(key) {
    state.facets = null; state.mask = null; state.clusterCounts = null;
    state.filter = { minProbability: 0, how: null, folder: null, video: null, dateFrom: null, dateTo: null, minStability: 0 };
    const buffer = await (await api(`/runs/${encodeURIComponent(key)}/facets`)).arrayBuffer();
    if (S.run !== key) return;
    const length = new DataView(buffer).getUint32(0, true);
    const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
    const n = head.n, at = 4 + length;
    state.facets = { ...head, probability: new Float32Array(buffer, at, n), day: new Float32Array(buffer, at + 4 * n, n),
      how_code: new Int32Array(buffer, at + 8 * n, n), folder_code: new Int32Array(buffer, at + 12 * n, n),
      video_code: new Int32Array(buffer, at + 16 * n, n) };
    state.shown = n;
    renderControls();
    if (state.colourBy !== "cluster") Map2D.recolour();
  }

  function active() {
    const f = state.filter;
    return Boolean(state.facets) && (f.minProbability > 0 || f.how !== null || f.folder !== null || f.video !== null || f.dateFrom !== null ||
      f.dateTo !== null || f.minStability > 0);
  }

  function stabilityOf() {
    return new Map(S.clusters.filter((c) => c.stability !== null && c.stability !== undefined).map((c) => [c.cluster, c.stability]));
  }

  // Which points pass every filter but ``skip`` (the facet whose own counts are wanted: crossfilter).
  function passes(skip) {
    const f = state.filter, d = state.facets, n = d.n, out = new Uint8Array(n);
    const stability = f.minStability > 0 ? stabilityOf() : null;
    for (let i = 0; i < n; i++) {
      if (f.minProbability > 0 && skip !== "probability" && !(d.probability[i] >= f.minProbability)) continue;
      if (f.how !== null && skip !== "how" && !f.how.has(d.how_code[i])) continue;
      if (f.folder !== null && skip !== "folder" && !f.folder.has(d.folder_code[i])) continue;
      if (f.video !== null && skip !== "video" && !f.video.has(d.video_code[i])) continue;
      if (f.dateFrom !== null && skip !== "date" && !(d.day[i] >= f.dateFrom)) continue;
      if (f.dateTo !== null && skip !== "date" && !(d.day[i] < f.dateTo + 1)) continue;
      if (stability && skip !== "stability" && !((stability.get(S.map.cluster[i]) ?? -1) >= f.minStability)) continue;
      out[i] = 1;
    }
    return out;
  }

  function counts(mask, codes, size) {
    const found = new Array(size).fill(0);
    for (let i = 0; i < codes.length; i++) if (mask[i]) found[codes[i]]++;
    return found;
  }

  // Filters changed: recompute what is shown, redraw the map and list, refresh the open grid.
  function apply({ refresh = true } = {}) {
    if (!state.facets || !S.map) return;
    if (active()) {
      state.mask = passes(null);
      state.clusterCounts = new Map();
      let shown = 0;
      for (let i = 0; i < state.mask.length; i++) {
        if (!state.mask[i]) continue;
        shown++;
        const c = S.map.cluster[i];
        state.clusterCounts.set(c, (state.clusterCounts.get(c) || 0) + 1);
      }
      state.shown = shown;
    } else {
      state.mask = null; state.clusterCounts = null; state.shown = state.facets.n;
    }
    Map2D.recolour();
    renderClusters();
    renderControls();
    writeViewHash();
    if (!refresh) return;
    if (S.again) S.again();  // an image's page, a search, a filed upload: their grids of nearest images
    else if (S.selection && S.selection.length) showSelection();
    else if (S.focus !== null) showCluster(S.focus, { zoom: false });
    else showOverview();
  }

  const shows = (row) => !state.mask || state.mask[row] === 1;

  // The colour of map row i under the chosen colouring.
  function colourer() {
    const d = state.facets, by = d ? state.colourBy : "cluster";
    if (by === "probability") return (i) => ramp(d.probability[i]);
    if (by === "date") {
      const span = d.date ? Math.max(d.date.max - d.date.min, 1e-9) : 1;
      return (i) => (d.date ? ramp((d.day[i] - d.date.min) / span) : GREY);
    }
    if (by === "how") {
      const colours = d.how.map((value, k) => (HOW_COLOURS[value] ? hexToRGB(HOW_COLOURS[value]) : PALETTE.rgb[(k * 7) % PALETTE.rgb.length]));
      return (i) => colours[d.how_code[i]];
    }
    if (by === "folder") return (i) => PALETTE.rgb[d.folder_code[i] % PALETTE.rgb.length];
    if (by === "video") return (i) => (d.video_code[i] ? PALETTE.rgb[d.video_code[i] % PALETTE.rgb.length] : GREY);
    if (by === "stability") {
      const colours = new Map([...stabilityOf()].map(([cluster, value]) => [cluster, ramp(value)]));
      return (i) => colours.get(S.map.cluster[i]) || GREY;
    }
    // Looked up per cluster (or leaf) once, not per point through the tree's maps (1M points). Below the
    // run's clusters a point shows its leaf's node (tree.js).
    const table = [], of = LEVEL.pointLeaves() || S.map.cluster;
    for (const c of S.clusters) if (c.cluster >= 0) table[c.cluster] = rgbOf(c.cluster);
    return (i) => { const c = of[i]; return c < 0 ? PALETTE.noise : table[c] || (table[c] = rgbOf(c)); };
  }

  // -- the controls: a "View" box at the top of the sidebar ---------------------------------------------
  function renderControls() {
    const box = $("#view-controls");
    const d = state.facets;
    if (!d) { box.replaceChildren(h("p", { class: "muted" }, "loading colours and filters…")); return; }
    const f = state.filter, hasStability = S.clusters.some((c) => c.stability !== null && c.stability !== undefined);
    const choice = h("select", { id: "colour-by", "aria-label": "colour by" }, ...[
      ["cluster", "cluster"], ["probability", "membership probability"], ["how", "how it was placed"], ["folder", "folder"],
      ["video", d.videos.length > 1 ? "video" : "video (no key-frames)"], ["date", d.date ? "file date" : "file date (not recorded)"], ["stability", hasStability ? "cluster stability" : "stability (not measured)"]]
      .map(([value, text]) => h("option", { value, selected: value === state.colourBy,
        disabled: (value === "date" && !d.date) || (value === "stability" && !hasStability) || (value === "video" && d.videos.length < 2) }, text)));
    choice.addEventListener("change", () => { state.colourBy = choice.value; Map2D.recolour(); renderControls(); writeViewHash(); });

    const probability = h("input", { type: "range", id: "filter-probability", min: "0", max: "1", step: "0.05", value: String(f.minProbability),
      "aria-label": "smallest membership probability" });
    const probabilityText = h("output", {}, f.minProbability.toFixed(2));
    probability.addEventListener("input", () => { probabilityText.textContent = Number(probability.value).toFixed(2); });
    probability.addEventListener("change", () => { f.minProbability = Number(probability.value); apply(); });

    const checklist = (id, values, codes, chosen, key) => {
      const mask = active() ? passes(key) : null, found = counts(mask || new Uint8Array(d.n).fill(1), codes, values.length);
      const list = h("div", { class: "checks", id },
        ...values.map((value, k) => h("label", { title: value },
          h("input", { type: "checkbox", value: String(k), checked: chosen === null || chosen.has(k),
            onchange: () => {
              const picked = new Set([...list.querySelectorAll("input:checked")].map((box) => Number(box.value)));
              f[key] = picked.size === values.length ? null : picked;
              apply();
            } }),
          key === "how" ? h("span", { class: "sw", style: `background:${HOW_COLOURS[value] || "#bbb"}` }) : null,
          ` ${value || (key === "video" ? "(still images)" : ".")} `, h("span", { class: "count" }, found[k].toLocaleString()))));
      return list;
    };

    const date = (id, value, key, label) => {
      const input = h("input", { type: "date", id, "aria-label": label, value: value === null ? "" : dayText(value),
        min: d.date ? dayText(d.date.min) : null, max: d.date ? dayText(d.date.max) : null, disabled: !d.date });
      input.addEventListener("change", () => { f[key] = dayOf(input.value); apply(); });
      return input;
    };
    const stability = h("input", { type: "range", id: "filter-stability", min: "0", max: "1", step: "0.05", value: String(f.minStability),
      disabled: !hasStability, "aria-label": "smallest cluster stability" });
    stability.addEventListener("change", () => { f.minStability = Number(stability.value); apply(); });

    const clear = h("button", { type: "button", id: "filters-clear", disabled: !active() }, "Clear filters");
    clear.addEventListener("click", () => {
      state.filter = { minProbability: 0, how: null, folder: null, video: null, dateFrom: null, dateTo: null, minStability: 0 };
      apply();
    });
    box.replaceChildren(
      h("label", { class: "row" }, "Colour by ", choice), legend(),
      h("details", { open: active() || box.dataset.open === "1", ontoggle: (event) => { box.dataset.open = event.target.open ? "1" : ""; } },
        h("summary", {}, "Filters", h("span", { id: "shown-count", class: "count" }, active() ? ` · ${state.shown.toLocaleString()} of ${d.n.toLocaleString()} shown` : "")),
        h("label", { class: "row" }, "membership ≥ ", probability, probabilityText),
        h("div", { class: "facet" }, "placed by", checklist("filter-how", d.how, d.how_code, f.how, "how")),
        h("div", { class: "facet" }, "folder", checklist("filter-folder", d.folders, d.folder_code, f.folder, "folder")),
        d.videos.length > 1 ? h("div", { class: "facet" }, "video", checklist("filter-video", d.videos, d.video_code, f.video, "video")) : null,
        h("div", { class: "row" }, d.date ? "file date " : "file date: not recorded ", date("filter-date-from", f.dateFrom, "dateFrom", "from date"), "–",
          date("filter-date-to", f.dateTo, "dateTo", "to date")),
        h("label", { class: "row", title: hasStability ? "" : "measure it with `imgcluster stability`" }, "stability ≥ ", stability,
          h("output", {}, hasStability ? f.minStability.toFixed(2) : "not measured")),
        clear));
  }

  function legend() {
    const d = state.facets, by = state.colourBy;
    const swatch = (rgb, text) => h("span", { class: "key" }, h("span", { class: "sw", style: `background:rgb(${rgb.join(",")})` }), text);
    if (by === "how") return h("div", { class: "legend", id: "legend" }, ...d.how.map((value) => swatch(hexToRGB(HOW_COLOURS[value] || "#bbbbbb"), value)));
    if (by === "folder") return h("div", { class: "legend", id: "legend" }, ...d.folders.slice(0, 12).map((value, k) => swatch(PALETTE.rgb[k % PALETTE.rgb.length], value || ".")),
      d.folders.length > 12 ? ` … ${d.folders.length - 12} more` : "");
    if (by === "video") return h("div", { class: "legend", id: "legend" }, swatch(GREY, "still images"),
      ...d.videos.slice(1, 12).map((value, k) => swatch(PALETTE.rgb[(k + 1) % PALETTE.rgb.length], value)));
    if (by === "cluster") return h("div", { class: "legend", id: "legend" }, "the cluster's colour, as in the list");
    const [low, high] = by === "probability" ? ["0", "1"] : by === "stability" ? ["0", "1"] : [dayText(d.date.min), dayText(d.date.max)];
    return h("div", { class: "legend", id: "legend" }, low, h("span", { class: "ramp" }), high);
  }

  // The colouring and filters go into the link (colour=, minp=, how=, folder=, from=, to=, mins=).
  function viewParams() {
    const f = state.filter, out = {};
    if (state.colourBy !== "cluster") out.colour = state.colourBy;
    if (f.minProbability > 0) out.minp = f.minProbability;
    if (f.how !== null && state.facets) out.how = [...f.how].map((k) => state.facets.how[k]).join(",");
    if (f.folder !== null && state.facets) out.folder = [...f.folder].map((k) => state.facets.folders[k]).join("|");
    if (f.video !== null && state.facets) out.video = [...f.video].map((k) => state.facets.videos[k] || STILLS).join("|");
    if (f.dateFrom !== null) out.from = dayText(f.dateFrom);
    if (f.dateTo !== null) out.to = dayText(f.dateTo);
    if (f.minStability > 0) out.mins = f.minStability;
    return out;
  }
  function writeViewHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    for (const key of ["colour", "minp", "how", "folder", "video", "from", "to", "mins"]) params.delete(key);
    for (const [key, value] of Object.entries(viewParams())) params.set(key, value);
    history.replaceState(null, "", "#" + params.toString());
  }
  // A link's colouring and filters (after load): unknown values are ignored.
  function readViewHash(wanted, { reset = false } = {}) {
    if (reset) {  // Back or Forward: the link's view whole, not added to the current one
      state.colourBy = "cluster";
      state.filter = { minProbability: 0, how: null, folder: null, video: null, dateFrom: null, dateTo: null, minStability: 0 };
    }
    const d = state.facets, f = state.filter;
    if (!d) return false;
    if (wanted.colour) state.colourBy = wanted.colour;
    if (wanted.minp) f.minProbability = Number(wanted.minp) || 0;
    if (wanted.how) f.how = new Set(wanted.how.split(",").map((v) => d.how.indexOf(v)).filter((k) => k >= 0));
    if (wanted.folder) f.folder = new Set(wanted.folder.split("|").map((v) => d.folders.indexOf(v)).filter((k) => k >= 0));
    if (wanted.video !== undefined) f.video = new Set(wanted.video.split("|").map((v) => d.videos.indexOf(v === STILLS ? "" : v)).filter((k) => k >= 0));
    if (wanted.from) f.dateFrom = dayOf(wanted.from);
    if (wanted.to) f.dateTo = dayOf(wanted.to);
    if (wanted.mins) f.minStability = Number(wanted.mins) || 0;
    return Boolean(reset || wanted.colour || active());
  }

  // Rows the open grid shows under the filters: cluster by cluster (the filtered view), most probable
  // first (as the server pages a cluster). Sorted as packed numbers, (cluster, 1 - probability to 1/1024,
  // row): a comparator sort took seconds at 1M rows.
  function rowsOf(cluster) {
    const d = state.facets, keys = [], ROW = 2 ** Math.max(21, Math.ceil(Math.log2(S.map.n + 1)));
    for (let i = 0; i < S.map.n; i++) {
      if ((cluster !== null && S.map.cluster[i] !== cluster) || !shows(i)) continue;
      const p = Number.isFinite(d.probability[i]) ? d.probability[i] : 0;
      keys.push(((cluster === null ? S.map.cluster[i] + 1 : 0) * 1024 + Math.round((1 - p) * 1023)) * ROW + i);
    }
    const sorted = Float64Array.from(keys).sort();
    return Array.from(sorted, (key) => key % ROW);
  }

  window.imgclusterView = {
    state: () => ({ colourBy: state.colourBy, shown: state.shown, n: state.facets ? state.facets.n : 0, active: active(),
      filters: viewParams(), how: state.facets ? state.facets.how : [], folders: state.facets ? state.facets.folders : [],
      videos: state.facets ? state.facets.videos : [] }),
  };
  return { load, apply, active, colourer, shows, rowsOf, renderControls, readViewHash, state, params: viewParams,
    probability: (row) => (state.facets ? state.facets.probability[row] : NaN),
    countOf: (cluster) => (state.clusterCounts ? state.clusterCounts.get(cluster) || 0 : null) };
})();
