// Result cards and the product view. A card opens its product (a button: Enter or a click), and asks for more or
// less like it.

const KEY_FIELDS = ["category", "colour", "gender", "brand"];

export function titleOf(hit) {
  return hit.payload.title || hit.product_id;
}

function priceOf(payload) {
  return typeof payload.price === "number" ? `${payload.price}` : null;
}

/** One <li> per result; `actions` has open(hit), like(hit) and unlike(hit). */
export function resultItem(hit, actions) {
  const item = document.createElement("li");
  item.className = "result";
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  const image = document.createElement("img");
  image.src = hit.image_url;
  image.alt = "";
  image.loading = "lazy";
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = titleOf(hit);
  const attrs = document.createElement("span");
  attrs.className = "attrs";
  attrs.textContent = [...KEY_FIELDS.map((key) => hit.payload[key]), priceOf(hit.payload)].filter(Boolean).join(" · ");
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = `score ${hit.score.toFixed(3)}`;
  open.append(image, title, attrs, score);
  open.dataset.label = `Open ${titleOf(hit)}: ${attrs.textContent}`;
  nameCard(open, document.body.classList.contains("show-scores"));
  open.addEventListener("click", () => actions.open(hit));
  const buttons = document.createElement("div");
  buttons.className = "actions";
  buttons.append(
    // the name starts with the words shown (WCAG's label in name: "click More like this" by voice)
    button("More like this", `More like this: ${titleOf(hit)}`, () => actions.like(hit)),
    button("Less like this", `Less like this: ${titleOf(hit)}`, () => actions.unlike(hit)),
  );
  item.append(open, buttons);
  return item;
}

/** A card's name holds the words it shows: its score too while scores are shown. */
export function nameCard(open, scores) {
  const score = scores ? ` (${open.querySelector(".score").textContent})` : "";
  open.setAttribute("aria-label", `${open.dataset.label}${score}`);
}

function button(text, label, clicked) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.setAttribute("aria-label", label);
  element.addEventListener("click", clicked);
  return element;
}

const HIDDEN = new Set(["title", "product_id", "image_key"]);

/** A field's name in words: "in_stock" is "in stock", "articleType" "article type". */
const spoken = (key) => key.replaceAll("_", " ").replace(/(\p{Ll})(\p{Lu})/gu, "$1 $2").toLowerCase();

/** Fill the product <dialog> and open it. */
export function showProduct(dialog, hit) {
  dialog.querySelector("#product-title").textContent = titleOf(hit);
  const image = dialog.querySelector("#product-image");
  image.src = hit.image_url;
  image.alt = titleOf(hit);
  // the title is the heading and the id comes first; which of its photos matched, and a column repeating the title
  // (a marketplace's productDisplayName), say nothing more
  const fields = Object.entries({ id: hit.product_id, ...hit.payload }).filter(
    ([key, value]) => key === "id" || !(HIDDEN.has(key) || value === hit.payload.title),
  );
  dialog.querySelector("#product-fields").replaceChildren(
    ...fields.flatMap(([key, value]) => {
      const term = document.createElement("dt");
      term.textContent = spoken(key);
      const detail = document.createElement("dd");
      detail.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
      return [term, detail];
    }),
  );
  dialog.showModal();
}
