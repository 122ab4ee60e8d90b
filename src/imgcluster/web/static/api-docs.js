// The HTTP API's endpoints, listed from the OpenAPI schema with no script from elsewhere (works offline).
"use strict";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function parameterRows(operation) {
  const rows = (operation.parameters || []).map((p) => el("tr", {},
    el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, p.required ? "required" : "optional"),
    el("td", {}, p.description || (p.schema && p.schema.type) || "")));
  if (operation.requestBody) {
    const types = Object.keys(operation.requestBody.content || {}).join(", ");
    rows.push(el("tr", {}, el("td", {}, el("code", {}, "body")), el("td", {}, types), el("td", {}, operation.requestBody.required ? "required" : "optional"), el("td", {}, "")));
  }
  return rows.length ? el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, ""), el("th", {}, "")), ...rows) : null;
}

async function main() {
  const schema = await (await fetch("/api/openapi.json")).json();
  const byTag = new Map();
  for (const [path, operations] of Object.entries(schema.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const tag = (operation.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(el("div", { class: "endpoint", "data-method": method.toUpperCase(), "data-path": path },
        el("span", { class: `method ${method}` }, method.toUpperCase()), " ", el("code", {}, path),
        el("div", {}, operation.summary || ""), operation.description ? el("div", { class: "muted" }, operation.description) : null,
        parameterRows(operation)));
    }
  }
  const root = document.getElementById("endpoints");
  for (const [tag, items] of byTag) root.append(el("h2", {}, tag), ...items);
  document.body.dataset.ready = String(schema.paths ? Object.keys(schema.paths).length : 0);
}

main().catch((error) => {
  const node = document.getElementById("error");
  node.textContent = `Could not read the API schema: ${error.message}`;
  node.hidden = false;
});
