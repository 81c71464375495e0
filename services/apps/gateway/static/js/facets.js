// The filter sidebar, built from GET /v1/filters: a checkbox per value with its count, price where products have one.

import { call } from "./api.js";

const NAMES = { category: "Category", colour: "Colour", gender: "Gender", brand: "Brand", in_stock: "Availability" };
const SHOWN = 12; // values listed before "Show all"

export function fieldName(field) {
  return NAMES[field] || field;
}

/** Each filter as words: "Colour: Red", "Price at most 40". */
export function describeFilters(filters) {
  const parts = [];
  for (const [field, value] of Object.entries(filters)) {
    if (field === "price_min") parts.push(`price at least ${value}`);
    else if (field === "price_max") parts.push(`price at most ${value}`);
    else if (field === "in_stock") parts.push("in stock only");
    else parts.push(`${fieldName(field).toLowerCase()} ${[].concat(value).join(" or ")}`);
  }
  return parts.join(", ");
}

/**
 * Draw the sidebar for a variant. `filters` is the page's {field: [values], in_stock, price_min, price_max};
 * `changed` is called after the shopper ticks, unticks or types a price.
 */
export async function showFacets(container, priceBox, variant, filters, changed) {
  const choices = await call(`/v1/filters?variant=${encodeURIComponent(variant)}`);
  const groups = choices.facets.map((facet) => {
    const group = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = fieldName(facet.field);
    group.append(legend);
    if (facet.field === "in_stock") {
      const inStock = facet.values.find((value) => value.value === true);
      if (!inStock) return null;
      group.append(checkbox(`In stock only (${inStock.count})`, filters.in_stock === true, (on) => {
        if (on) filters.in_stock = true;
        else delete filters.in_stock;
        changed();
      }));
      return group;
    }
    const chosen = new Set([].concat(filters[facet.field] || []));
    const boxes = facet.values.map((value) =>
      checkbox(`${value.value} (${value.count})`, chosen.has(String(value.value)), (on) => {
        const now = new Set([].concat(filters[facet.field] || []));
        if (on) now.add(String(value.value));
        else now.delete(String(value.value));
        if (now.size) filters[facet.field] = [...now];
        else delete filters[facet.field];
        changed();
      }),
    );
    group.append(...boxes.slice(0, SHOWN));
    if (boxes.length > SHOWN) {
      const all = document.createElement("button");
      all.type = "button";
      all.textContent = `Show all ${boxes.length} ${fieldName(facet.field).toLowerCase()} values`;
      all.addEventListener("click", () => {
        all.replaceWith(...boxes.slice(SHOWN));
        boxes[SHOWN].querySelector("input").focus(); // the button is gone: focus the first value it showed
      });
      group.append(all);
    }
    return group;
  });
  const shown = groups.filter(Boolean);
  container.replaceChildren(...(shown.length ? shown : [note("This catalogue's products carry no fields to filter on.")]));
  priceBox.hidden = !choices.price;
}

function checkbox(text, checked, toggled) {
  const label = document.createElement("label");
  const input = document.createElement("input");
  input.type = "checkbox";
  input.checked = checked;
  input.addEventListener("change", () => toggled(input.checked));
  label.append(input, document.createTextNode(text));
  return label;
}

function note(text) {
  const paragraph = document.createElement("p");
  paragraph.className = "muted";
  paragraph.textContent = text;
  return paragraph;
}
