// Coarse ↔ fine: the map and the cluster list coloured by a cut of the run's cluster tree. The tree
// comes once per run (/api/tree); each step of the control is worked out here, with no request.
// Loaded before app.js, which colours a cluster through LEVEL.colourOf and calls LEVEL.reset(run).
"use strict";

const LEVEL = {
  colourOf: (cluster) => cluster,  // the cluster whose palette colour a leaf shows at the chosen level
  tree: null,                      // {leaves, merges, nodes (id → node), leafOf (node → its largest leaf)}
  k: 1,                            // the slider's level: clusters in the cut
  open: new Set(),                 // tree nodes expanded in the cluster list

  async reset(key) {
    const control = document.getElementById("level");
    LEVEL.tree = null;
    LEVEL.open.clear();
    LEVEL.colourOf = (cluster) => cluster;
    try {
      const data = await getJSON(`/tree?run=${encodeURIComponent(key)}`);
      if (S.run !== key) return;  // another run was opened meanwhile: its own reset draws its tree
      const nodes = new Map(data.nodes.map((n) => [n.id, n]));
      // The map's images carry the run's clusters: the slider moves from them up (parts of a split cluster,
      // the tree's fine level, are below them; older servers send no "clusters": the leaves are the clusters).
      const clusters = new Set(data.clusters || data.nodes.filter((n) => !n.children.length).map((n) => n.id));
      const leaves = data.nodes.filter((n) => clusters.has(n.id)).map((n) => n.id);
      const merges = data.nodes.filter((n) => n.children.length && n.k < clusters.size).map((n) => n.id);  // in merge order
      const under = new Map(leaves.map((leaf) => [leaf, [leaf]]));
      const leafOf = new Map(leaves.map((leaf) => [leaf, leaf]));
      for (const id of merges) {  // children come before their parent
        const [a, b] = nodes.get(id).children;
        under.set(id, under.get(a).concat(under.get(b)));
        // A merged cluster keeps its largest leaf's colour: the eye follows it from level to level.
        const big = [leafOf.get(a), leafOf.get(b)].sort((x, y) => nodes.get(y).size - nodes.get(x).size || x - y)[0];
        leafOf.set(id, big);
      }
      LEVEL.tree = { leaves, merges, nodes, under, leafOf, coarse: data.coarse };
    } catch (error) { console.warn(error); }
    const count = LEVEL.tree ? LEVEL.tree.leaves.length : 1;
    Object.assign(control, { min: 1, max: count, value: count, disabled: count < 2 });
    LEVEL.show(count);
  },

  // The cut at k clusters undoes the last k - 1 merges: each leaf shows the node it is in after the first n - k.
  cut(k) {
    const t = LEVEL.tree, owner = new Map(t.leaves.map((leaf) => [leaf, leaf]));
    for (const id of t.merges.slice(0, t.leaves.length - k)) for (const leaf of t.under.get(id)) owner.set(leaf, id);
    return owner;
  },

  // The cut's nodes, largest first, each with its leaves: the cluster list's groups and the map's coarse
  // labels. Null at the leaves (or with no tree): then a cluster is its own group.
  groups(k) {
    const t = LEVEL.tree;
    if (!t || k >= t.leaves.length) return null;
    const members = new Map();
    for (const [leaf, id] of LEVEL.cut(k)) {
      if (!members.has(id)) members.set(id, []);
      members.get(id).push(leaf);
    }
    return [...members].map(([id, leaves]) => ({ node: t.nodes.get(id), leaves }))
      .sort((a, b) => b.node.size - a.node.size || a.node.id - b.node.id);
  },

  // Open, in the cluster list, the node a cluster is in at the slider's level (a cluster being shown).
  reveal(cluster) {
    const group = (LEVEL.groups(LEVEL.k) || []).find((g) => g.leaves.includes(cluster));
    if (group && group.leaves.length > 1) LEVEL.open.add(group.node.id);
  },

  // The level the map's large labels name: the slider's when coarser than the leaves, else the tree's coarse cut.
  labelLevel() {
    const t = LEVEL.tree;
    if (!t) return null;
    const k = LEVEL.k < t.leaves.length ? LEVEL.k : t.coarse;
    return k && k < t.leaves.length ? k : null;
  },

  show(k) {
    const t = LEVEL.tree;
    LEVEL.k = k;
    const owner = t ? LEVEL.cut(k) : null;
    if (t) LEVEL.colourOf = (cluster) => (owner.has(cluster) ? t.leafOf.get(owner.get(cluster)) : cluster);
    if (S.focus !== null) LEVEL.reveal(S.focus);
    renderClusters();  // grouped by the cut's nodes when coarser than the leaves (app.js)
    if (t) {
      const node = (cluster) => t.nodes.get(owner.get(cluster));
      for (const item of document.querySelectorAll("#clusters li[data-cluster]")) {
        const cluster = Number(item.dataset.cluster), at = owner.has(cluster) ? node(cluster) : null;
        item.dataset.node = at ? at.id : "";
        item.querySelector(".sw").style.background = cssOf(cluster);
        if (at) item.querySelector(".sw").title = `at ${k} clusters: in ${at.id} · ${at.name} (${at.size} images)`;
      }
    }
    const shown = document.getElementById("level-shown");
    shown.textContent = t ? `${k} of ${t.leaves.length} clusters${k === t.coarse ? " (coarse)" : ""}` : "";
    document.body.dataset.level = String(k);
    if (S.map) Map2D.recolour();
  },
};

document.getElementById("level").addEventListener("input", (event) => LEVEL.show(Number(event.target.value)));
