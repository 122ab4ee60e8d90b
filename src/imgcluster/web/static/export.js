// Export from the browser: the run, a cluster, a selection or the filtered view, through the same code as
// `imgcluster export` (POST /api/export writes into a folder on the server's machine; /api/export/download
// sends a CSV or Parquet table). Loaded after app.js and view.js: it uses S, View, h, $, api, sendJSON.
"use strict";

const Export = (() => {
  let places = null;  // where the server lets exports go (GET /api/export/places)

  // The panel's "Export…" button; ``scope()`` gives {cluster?, image_ids?, label} when pressed.
  function button(scope) {
    const open = h("button", { type: "button", id: "export-open", title: "Export these images: folders of links, FiftyOne, CSV or Parquet" }, "Export…");
    open.addEventListener("click", () => {
      const existing = $("#export-form");
      if (existing) return existing.remove();
      $("#panel-body").prepend(form(scope()));
    });
    return open;
  }

  function form(scope) {
    const to = h("select", { id: "export-to", "aria-label": "export format" },
      h("option", { value: "folders" }, "a folder per cluster (links)"), h("option", { value: "fiftyone" }, "FiftyOne dataset"),
      h("option", { value: "csv" }, "CSV table"), h("option", { value: "parquet" }, "Parquet table"));
    const dest = h("input", { type: "text", id: "export-dest", "aria-label": "export to folder", size: "40",
      placeholder: "an absolute folder on the server, e.g. ~/exports/cats" });
    const mode = h("select", { id: "export-mode", "aria-label": "links or copies" }, h("option", { value: "link" }, "links"), h("option", { value: "copy" }, "copies"));
    const go = h("button", { type: "button", id: "export-go" }, "Export");
    const download = h("button", { type: "button", id: "export-download", disabled: true }, "Download");
    const result = h("p", { id: "export-result", role: "status" }, "");
    const count = scope.image_ids ? scope.image_ids.length : null;
    const suggest = () => {
      if (!places || !places.length || dest.dataset.typed) return;  // never over what the user typed
      const suffix = to.value === "csv" || to.value === "parquet" ? "." + to.value : "";
      dest.value = `${places[0]}/imgcluster-${S.run}-${scope.label}${suffix}`;
    };
    to.addEventListener("change", () => {
      const table = to.value === "csv" || to.value === "parquet";
      download.disabled = !table;
      mode.hidden = to.value !== "folders";
      suggest();
    });
    dest.addEventListener("input", () => { dest.dataset.typed = "1"; });
    const body = () => ({ run: S.run, to: to.value, mode: mode.value, dest: dest.value || null,
      cluster: scope.cluster ?? null, image_ids: scope.image_ids ?? null,
      level: LEVEL.tree && LEVEL.k !== LEVEL.tree.clusters.length ? String(LEVEL.k) : null });  // the cut the slider shows, coarser or finer
    go.addEventListener("click", async () => {
      try {
        status("exporting…");
        const done = await sendJSON("/export", "POST", body());
        const how = done.format === "folders" ? ` (${done.linked} linked, ${done.copied} copied)` : "";
        result.textContent = `Exported ${done.images.toLocaleString()} images (${done.format}) to ${done.dest}${how}.` +
          (done.missing ? ` ${done.missing} were gone from their folder and left out.` : "");
        result.dataset.dest = done.dest;
        status(`exported ${done.images} images to ${done.dest}`);
      } catch (error) { fail(error); }
    });
    download.addEventListener("click", async () => {
      try {
        const response = await api("/export/download", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body()) });
        const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/)?.[1] || `export.${to.value}`;
        const link = h("a", { href: URL.createObjectURL(await response.blob()), download: name });
        document.body.append(link);
        link.click();
        link.remove();
        result.textContent = `Downloaded ${name}.`;
      } catch (error) { fail(error); }
    });
    const box = h("div", { id: "export-form", class: "export-form" },
      h("strong", {}, `Export ${count === null ? (scope.cluster !== undefined ? "the cluster" : "the run") : count.toLocaleString() + " images"}`),
      h("div", { class: "row" }, to, mode), h("div", { class: "row" }, dest), h("div", { class: "row" }, go, download), result);
    const ready = places ? Promise.resolve() : getJSON("/export/places").then((found) => { places = found.places; });
    ready.then(suggest).catch(fail);
    return box;
  }

  return { button };
})();
