// Coarse ↔ fine: the map and the cluster list coloured by a cut of the run's cluster tree, from its coarsest
// cut down to its leaves (a cluster split into parts where it holds well separated ones). The tree comes
// once per run (/api/tree); each step of the control is worked out here, with no request. Below the run's
// clusters a point shows its leaf: each point's leaf comes once, on the first step there
// (/api/runs/KEY/leaves, one byte a point), so the map's first frame never waits for it.
// Loaded before app.js, which colours a cluster through LEVEL.colourOf and calls LEVEL.reset(run).
"use strict";

const LEVEL = {
  colourOf: (cluster) => cluster,  // the cluster (or part) whose colour a cluster or leaf shows at the chosen level
  tree: null,    // {leaves, clusters, merges, nodes (id → node), under, leafOf, rep, partsOf, coarse}
  k: 1,          // the slider's level: clusters in the cut
  open: new Set(),       // tree nodes expanded in the cluster list
  partRGB: new Map(),    // a part's own colour (every part of a split cluster but its largest, which shows the cluster's)
  pointLeaf: null,       // Int32Array: each map point's leaf, once fetched (null: not yet)
  pending: null,         // that fetch, while under way
  owner: null,           // the shown cut: each leaf's node (Map), null before a tree

  async reset(key) {
    const control = document.getElementById("level");
    LEVEL.tree = null;
    LEVEL.open.clear();
    LEVEL.partRGB.clear();
    LEVEL.pointLeaf = null;
    LEVEL.pending = null;
    LEVEL.owner = null;
    LEVEL.colourOf = (cluster) => cluster;
    try {
      const data = await getJSON(`/tree?run=${encodeURIComponent(key)}`);
      if (S.run !== key) return;  // another run was opened meanwhile: its own reset draws its tree
      LEVEL.tree = LEVEL.build(data);
    } catch (error) { console.warn(error); }
    const t = LEVEL.tree, count = t ? t.leaves.length : 1, own = t ? t.clusters.length : 1;
    Object.assign(control, { min: 1, max: count, value: own, disabled: count < 2 });
    await LEVEL.show(own);
  },

  // The tree as the page cuts it. Merges inside a split cluster come first (the tree's order), so the cut at
  // as many clusters as the run has is the run's clusters, and finer cuts split them into their parts.
  build(data) {
    const nodes = new Map(data.nodes.map((n) => [n.id, n]));
    const leaves = data.nodes.filter((n) => !n.children.length).map((n) => n.id);
    const clusters = data.clusters || leaves;  // older servers send no "clusters": the leaves are the clusters
    const merges = data.nodes.filter((n) => n.children.length).sort((a, b) => b.k - a.k).map((n) => n.id);  // in merge order
    const under = new Map(leaves.map((leaf) => [leaf, [leaf]]));
    for (const id of merges) {  // children come before their parent
      const [a, b] = nodes.get(id).children;
      under.set(id, under.get(a).concat(under.get(b)));
    }
    // A split cluster's largest part shows the cluster's colour; its other parts, the first palette colours
    // (the most distinct) that no cluster and no other part shows, while the palette lasts (256), then
    // none of their own cluster's. rep: each cluster's largest leaf; partsOf: its leaves, ascending, as
    // /leaves numbers them.
    const colourKey = new Map(leaves.map((leaf) => [leaf, leaf])), rep = new Map(), partsOf = [];
    const rgbText = (rgb) => rgb.join(","), taken = new Set(clusters.map((c) => rgbText(ownRGB(c))));
    let at = -1;
    for (const cluster of clusters) {
      const parts = [...under.get(cluster)].sort((a, b) => a - b);
      partsOf[cluster] = parts;
      const largest = [...parts].sort((a, b) => nodes.get(b).size - nodes.get(a).size || a - b)[0];
      rep.set(cluster, largest);
      colourKey.set(largest, cluster);
      const siblings = new Set([rgbText(ownRGB(cluster))]);
      for (const part of parts) {
        if (part === largest) continue;
        const free = (i) => !siblings.has(rgbText(PALETTE.rgb[i])) && (taken.size >= PALETTE.rgb.length || !taken.has(rgbText(PALETTE.rgb[i])));
        for (let tries = 0; tries < PALETTE.rgb.length && !(at >= 0 && free(at)); tries++) at = (at + 1) % PALETTE.rgb.length;
        const rgb = PALETTE.rgb[Math.max(at, 0)];
        LEVEL.partRGB.set(part, rgb);
        siblings.add(rgbText(rgb));
        taken.add(rgbText(rgb));
      }
    }
    // A merged node keeps its largest leaf's colour: the eye follows it from level to level (a split
    // cluster's colour key is the cluster, as large as all its parts: it wins inside the cluster).
    const leafOf = new Map(colourKey);
    for (const id of merges) {
      const [a, b] = nodes.get(id).children;
      leafOf.set(id, [leafOf.get(a), leafOf.get(b)].sort((x, y) => nodes.get(y).size - nodes.get(x).size || x - y)[0]);
    }
    return { leaves, clusters, merges, nodes, under, leafOf, rep, partsOf, coarse: data.coarse };
  },

  // The cut at k clusters undoes the last k - 1 merges: each leaf shows the node it is in after the first n - k.
  cut(k) {
    const t = LEVEL.tree, owner = new Map(t.leaves.map((leaf) => [leaf, leaf]));
    for (const id of t.merges.slice(0, t.leaves.length - k)) for (const leaf of t.under.get(id)) owner.set(leaf, id);
    return owner;
  },

  // The node of the cut a cluster (or a leaf) is in: a split cluster's is the one that holds its largest part.
  nodeOf(owner, cluster) {
    return owner.get(LEVEL.tree.rep.get(cluster) ?? cluster);
  },

  // The cut's nodes coarser than the run's clusters, largest first, each with its clusters ("leaves" here: the
  // rows of the list and the map's labels are the clusters'). Null at or below the run's clusters (or with no
  // tree): then a cluster is its own group.
  groups(k) {
    const t = LEVEL.tree;
    if (!t || k >= t.clusters.length) return null;
    const owner = LEVEL.cut(k), members = new Map();
    for (const cluster of t.clusters) {
      const id = LEVEL.nodeOf(owner, cluster);
      if (!members.has(id)) members.set(id, []);
      members.get(id).push(cluster);
    }
    return [...members].map(([id, leaves]) => ({ node: t.nodes.get(id), leaves }))
      .sort((a, b) => b.node.size - a.node.size || a.node.id - b.node.id);
  },

  // Below the run's clusters: each cluster split at cut k, with the cut's nodes inside it (its parts, or
  // nodes over some of them), largest first. Null at or above the run's clusters.
  parts(k) {
    const t = LEVEL.tree;
    if (!t || k <= t.clusters.length) return null;
    const owner = LEVEL.cut(k), found = new Map();
    for (const cluster of t.clusters) {
      const inside = [...new Set(t.partsOf[cluster].map((leaf) => owner.get(leaf)))];
      if (inside.length > 1) found.set(cluster, inside.map((id) => t.nodes.get(id)).sort((a, b) => b.size - a.size || a.id - b.id));
    }
    return found;
  },

  // Each map point's leaf, at a cut below the run's clusters (else null: a point shows its cluster's colour).
  pointLeaves() {
    return LEVEL.tree && LEVEL.k > LEVEL.tree.clusters.length ? LEVEL.pointLeaf : null;
  },

  // Fetch each point's leaf once per run: a byte a point, its place among its cluster's leaves.
  loadLeaves() {
    if (LEVEL.pointLeaf) return Promise.resolve();
    if (LEVEL.pending) return LEVEL.pending;
    const key = S.run, map = S.map, t = LEVEL.tree;
    const pending = api(`/runs/${encodeURIComponent(key)}/leaves`).then((response) => response.arrayBuffer()).then((buffer) => {
      if (S.run !== key || S.map !== map || LEVEL.tree !== t) return;  // another run opened meanwhile
      const place = new Uint8Array(buffer), leaf = new Int32Array(map.n);
      for (let i = 0; i < map.n; i++) {
        const cluster = map.cluster[i], parts = t.partsOf[cluster];
        leaf[i] = parts ? parts[place[i]] ?? cluster : cluster;
      }
      LEVEL.pointLeaf = leaf;
    }).finally(() => { if (LEVEL.pending === pending) LEVEL.pending = null; });
    LEVEL.pending = pending;
    return pending;
  },

  // The name of the part of its cluster a map point is in at the slider's cut (null: its cluster is whole there).
  partName(row) {
    const leaves = LEVEL.pointLeaves(), t = LEVEL.tree;
    if (!leaves || !LEVEL.owner) return null;
    const cluster = S.map.cluster[row], node = LEVEL.owner.get(leaves[row]);
    return node === undefined || node === cluster ? null : t.nodes.get(node).name;
  },

  // Open, in the cluster list, the node a cluster is in at the slider's level (a cluster being shown).
  reveal(cluster) {
    const group = (LEVEL.groups(LEVEL.k) || []).find((g) => g.leaves.includes(cluster));
    if (group && group.leaves.length > 1) LEVEL.open.add(group.node.id);
  },

  // The level the map's large labels name: the slider's when coarser than the run's clusters, else the tree's coarse cut.
  labelLevel() {
    const t = LEVEL.tree;
    if (!t) return null;
    const k = LEVEL.k < t.clusters.length ? LEVEL.k : t.coarse;
    return k && k < t.clusters.length ? k : null;
  },

  async show(k) {
    const t = LEVEL.tree;
    LEVEL.k = k;
    if (t && k > t.clusters.length && !LEVEL.pointLeaf) {
      try { await LEVEL.loadLeaves(); } catch (error) { fail(error); }  // without them the points keep their cluster's colour
      if (LEVEL.k !== k || LEVEL.tree !== t) return;  // the slider moved on meanwhile: that step draws
    }
    const owner = t ? LEVEL.cut(k) : null;
    LEVEL.owner = owner;
    if (t) LEVEL.colourOf = (cluster) => t.leafOf.get(LEVEL.nodeOf(owner, cluster)) ?? cluster;
    if (S.focus !== null) LEVEL.reveal(S.focus);
    renderClusters();  // grouped by the cut's nodes when coarser than the clusters, with parts when finer (app.js)
    if (t) {
      for (const item of document.querySelectorAll("#clusters li[data-cluster]")) {
        const cluster = Number(item.dataset.cluster), at = t.nodes.has(cluster) ? t.nodes.get(LEVEL.nodeOf(owner, cluster)) : null;
        item.dataset.node = at ? at.id : "";
        item.querySelector(".sw").style.background = cssOf(cluster);
        if (at) item.querySelector(".sw").title = `at ${k} clusters: in ${at.id} · ${at.name} (${at.size} images)`;
      }
    }
    const shown = document.getElementById("level-shown");
    const own = t ? t.clusters.length : 0, finer = t && t.leaves.length > own;
    shown.textContent = t ? `${k} of ${t.leaves.length} clusters${k === t.coarse ? " (coarse)" : finer && k === own ? " (the run's)" :
      k > own ? " (parts)" : ""}` : "";
    document.body.dataset.level = String(k);
    if (S.map) Map2D.recolour();
  },
};

document.getElementById("level").addEventListener("input", (event) => LEVEL.show(Number(event.target.value)));
