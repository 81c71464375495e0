// The shopper's page: one query (words, a photo or a drawing, products liked or not, filters, a part of the photo)
// sent to POST /v1/search, its results, and the query kept in the address so a search can be shared and undone.

import { call, publicKey, useKey } from "./api.js";
import { describeFilters, fieldName, showFacets } from "./facets.js";
import { fillPicker, loadModels, searchable, showCard } from "./models.js";
import { QueryPhoto, sendable } from "./photo.js";
import { nameCard, resultItem, showProduct, titleOf } from "./results.js";
import { Sketchpad } from "./sketchpad.js";

const PAGE_SIZE = 12;
const MAX_OFFSET = 1000; // the API's deepest page
const $ = (id) => document.getElementById(id);

const state = {
  text: "",
  photo: null, // {blob, name} from the shopper's device, or {url}
  drawing: null, // a PNG Blob from the canvas
  choice: {}, // {garment} or {box}: the part of the photo searched; {}: the whole photo
  like: [],
  unlike: [],
  filters: {},
  variant: null,
  interpret: true,
  guess: true, // a photo of a person steered to the kind guessed
  offset: 0,
};
const titles = new Map(); // product id -> title, for the chips of products liked
// The photo or drawing from this device of each history entry, by the key its state holds: a browser keeps no File
// in the history's state, and the page lives on while the shopper goes back and forth.
const pictures = new Map();
const PICTURES_KEPT = 50; // entries whose picture Back can bring back
const LOAD = `${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`; // entries of an earlier load: none
let entries = 0;
// What the search refused the photo or drawing itself for: it is taken away, and the next search goes on without it.
const PICTURE_REFUSED = new Set(["bad_image", "bad_image_reference", "image_unreachable", "too_large"]);
const narrow = () => matchMedia("(max-width: 720px)").matches;
// The page's key, asked for at once: a search sent before it arrives waits for it instead of being refused; where
// it could not be fetched, the next search asks again (else every search went without it, refused).
let keyed = askKey();
let keyLate = false; // the key came after the load failed to get it: the models and filters are asked again
function askKey() {
  return publicKey().then(
    (key) => {
      useKey(key);
      if (keyLate) refreshModels().then(refreshFacets, () => {});
    },
    () => {
      keyed = null;
      keyLate = true;
    },
  );
}
let models = [];
let ticket = 0; // only the newest search paints
let asked = 0; // queries searched or cleared (a next page is none): the page's own search yields to the shopper's
let shownHit = null; // the product in the product view

const results = $("results");
const more = $("more");
const photo = new QueryPhoto($("query-shown"), (choice) => {
  state.choice = choice;
  if (choice.garment) state.interpret = true; // a garment picked steers to its kinds, even after a chip was removed
  run();
});
const pad = new Sketchpad($("sketch-canvas"), () => {});

function hasQuery() {
  return Boolean(state.text || state.photo || state.drawing || state.like.length);
}

function formOf(offset) {
  const form = new FormData();
  if (state.text) form.set("text", state.text);
  if (state.photo?.blob) form.set("image", state.photo.blob, state.photo.name || "photo");
  if (state.photo?.url) form.set("image_url", state.photo.url);
  if (state.drawing) form.set("sketch", state.drawing, "drawing.png");
  if (state.choice.garment) form.set("garment", state.choice.garment);
  if (state.choice.box) form.set("box", state.choice.box.join(","));
  if (state.like.length) form.set("like", JSON.stringify(state.like));
  if (state.unlike.length) form.set("unlike", JSON.stringify(state.unlike));
  if (Object.keys(state.filters).length) form.set("filters", JSON.stringify(state.filters));
  if (state.variant) form.set("variant", state.variant);
  if (!state.interpret) form.set("interpret", "false");
  if (!state.guess) form.set("guess", "false");
  form.set("top_k", String(PAGE_SIZE));
  form.set("offset", String(offset));
  return form;
}

function status(text) {
  $("status").textContent = text;
}

/** Search with the page's query; `append` fetches the next page under the results shown; `reveal` brings the
 * results into view on a phone, where they sit below the query. */
async function run({ append = false, remember = true, reveal = false, said = "" } = {}) {
  const used = document.activeElement !== document.body; // a control the answer may replace (a chip, a card's button)
  if (!hasQuery()) {
    if (remember) rememberQuery(); // a reload or a shared link does not bring the last search back
    showNothing("Type some words, add a photo or make a drawing first.");
    if (used) refocus();
    return;
  }
  const mine = ++ticket;
  if (!append) asked++;
  await (keyed ||= askKey());
  const offset = append ? state.offset + PAGE_SIZE : 0;
  if (remember && !append) rememberQuery();
  if (!append) more.hidden = true; // no page 2 of a query being replaced
  $("error").textContent = said; // what became of the query's last search, where it still matters
  status(append ? "Loading more…" : "Searching…");
  results.setAttribute("aria-busy", "true");
  try {
    const answer = await call("/v1/search", { method: "POST", body: formOf(offset) });
    if (mine !== ticket) return;
    state.offset = offset;
    paint(answer, append);
  } catch (error) {
    if (mine !== ticket) return;
    status("");
    if (!append) {
      results.replaceChildren();
      more.hidden = true;
    }
    const picture = state.photo ? "photo" : state.drawing ? "drawing" : null;
    if (!append && picture && PICTURE_REFUSED.has(error.kind)) {
      dropPicture();
      const why = `Your ${picture} could not be searched, so it was taken away: ${error.message}`;
      // what the query still holds (words, filters) is searched without it, the reason kept in view
      if (hasQuery()) return run({ remember: false, reveal, said: why });
      $("error").textContent = why;
    } else {
      $("error").textContent = error.message;
    }
    if (!append) showTerms({}, []); // what the query holds, each removable: the server understood nothing of it
  } finally {
    if (mine === ticket) results.removeAttribute("aria-busy");
  }
  if (mine !== ticket) return;
  if (reveal && narrow()) {
    $("results-heading").scrollIntoView({ block: "start" }); // the query's chips and photo too
    if (used) document.activeElement.blur(); // the control used is out of view now: focus follows the results
  }
  if (used) refocus();
}

/** Nothing to search: nothing shown, and a search still under way paints nothing. */
function showNothing(message) {
  ticket++;
  asked++;
  status(message);
  $("error").textContent = "";
  results.replaceChildren();
  results.removeAttribute("aria-busy");
  $("terms").replaceChildren();
  more.hidden = true;
}

function paint(answer, append) {
  for (const hit of answer.results) titles.set(hit.product_id, titleOf(hit));
  const items = answer.results.map((hit) =>
    resultItem(hit, { open: openProduct, like: (chosen) => likeProduct(chosen), unlike: (chosen) => unlikeProduct(chosen) }),
  );
  if (append) results.append(...items);
  else results.replaceChildren(...items);
  more.hidden = answer.results.length < PAGE_SIZE || state.offset + PAGE_SIZE > MAX_OFFSET;
  const shown = results.children.length;
  if (!shown) {
    const filters = describeFilters(state.filters);
    status(filters ? `No product matches these filters (${filters}). Remove a filter to see more.` : "No results.");
  } else {
    // what was understood ranks first; where the catalogue has too few such products, others follow
    const first = Object.keys(answer.interpreted || {}).length ? " (those with what was understood first)" : "";
    const counted = `${shown} ${shown === 1 ? "result" : "results"}`;
    status(`${counted} from ${answer.variant} in ${Math.round(answer.took_ms)} ms${first}.`);
  }
  if (!append) {
    showTerms(answer.interpreted || {}, answer.guessed || []);
    if (state.photo) photo.regions(answer, state.choice.garment);
  }
}

/** Where the control the shopper used was replaced by the answer (a chip taken away, a card's button), focus goes to
 * the status line, which says what came back, rather than to the page's start (a page just opened keeps its focus
 * where it is). */
function refocus() {
  if (document.activeElement !== document.body) return;
  // a search that failed says why in the error line: the status line is empty then
  $($("error").textContent ? "error" : "status").focus({ preventScroll: true });
}

// ---- the chips of what is searched: each one removes itself

function showTerms(interpreted, guessed) {
  const chips = [];
  for (const [field, value] of Object.entries(interpreted)) {
    // one chip a field: a garment picked on a photo of a person is every kind of that garment the catalogue has
    const values = [].concat(value);
    const named = values.length > 3 ? `${values.slice(0, 3).join(", ")} and ${values.length - 3} more` : values.join(", ");
    const what = fieldName(field).toLowerCase();
    if (guessed.includes(field)) {
      // no words said it: the search guessed it from the photo; taking it back leaves the words steering
      chips.push(chip(`Guessed ${what} from your photo: ${named}`, () => { state.guess = false; run(); }));
    } else {
      chips.push(chip(`Understood ${what}: ${named}`, () => forgetUnderstood(values.join(" "))));
    }
  }
  if (state.photo) chips.push(chip("Your photo", () => clearPhoto()));
  if (state.drawing) chips.push(chip("Your drawing", () => { state.drawing = null; run(); }));
  for (const id of state.like) chips.push(chip(`More like: ${titles.get(id) || id}`, () => { state.like = state.like.filter((x) => x !== id); run(); }));
  for (const id of state.unlike) chips.push(chip(`Less like: ${titles.get(id) || id}`, () => { state.unlike = state.unlike.filter((x) => x !== id); run(); }));
  for (const [field, value] of Object.entries(state.filters)) {
    for (const one of [].concat(value)) {
      const words = describeFilters({ [field]: field in { price_min: 1, price_max: 1 } ? value : [one] });
      chips.push(chip(`Filter: ${words}`, () => dropFilter(field, one)));
    }
  }
  $("terms").replaceChildren(...chips);
}

function chip(text, remove) {
  const item = document.createElement("li");
  item.className = "chip";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "remove";
  button.textContent = "×";
  button.setAttribute("aria-label", `Remove ${text}`);
  button.addEventListener("click", remove);
  item.append(document.createTextNode(text), button);
  return item;
}

const bare = (word) => word.toLowerCase().replace(/[^\p{L}\p{N}]/gu, "");
// "dress" said "Dresses", "t-shirt" said "Tshirts": one starts the other (short words only whole)
const says = (word, value) =>
  word === value || (Math.min(word.length, value.length) >= 3 && (word.startsWith(value) || value.startsWith(word)));

// words that only join others ("in" of "in red", "for" of "for men"): taken back with the word they lead to
const JOINING = new Set(["a", "an", "and", "by", "for", "from", "in", "of", "on", "the", "to", "with"]);

/** Take back what the words were understood as: drop the words that said it (and the joining words just before
 * them), or else stop interpreting them. */
function forgetUnderstood(value) {
  const meant = String(value).split(/\s+/).map(bare).filter(Boolean);
  const words = state.text.split(/\s+/).filter(Boolean);
  const dropped = words.map((word) => meant.some((part) => says(bare(word), part)));
  if (dropped.some(Boolean)) {
    for (let at = words.length - 2; at >= 0; at--) {
      if (dropped[at + 1] && !dropped[at] && JOINING.has(bare(words[at]))) dropped[at] = true;
    }
    state.text = words.filter((_, at) => !dropped[at]).join(" ");
  } else state.interpret = false;
  $("words").value = state.text;
  run();
}

function dropFilter(field, value) {
  const left = [].concat(state.filters[field]).filter((one) => String(one) !== String(value));
  if (left.length && !(field in { price_min: 1, price_max: 1, in_stock: 1 })) state.filters[field] = left;
  else delete state.filters[field];
  syncPrice();
  refreshFacets();
  run();
}

// ---- what the shopper sends

/** A new photo or drawing starts a new query: the words and filters stay; the old picture, the part of it searched,
 * the products liked or not and a kind guess taken back go (the new photo's kind is guessed). `shown` and `caption`
 * are what the photo beside the results shows. */
function searchPicture({ photo: picked = null, drawing = null }, shown = null, caption = null) {
  picks++;
  Object.assign(state, { photo: picked, drawing, choice: {}, like: [], unlike: [], guess: true });
  photo.show(shown, caption);
  run({ reveal: true });
}

let picks = 0; // photos and drawings put in the query: a big photo is shrunk for a moment, and a later one wins

async function setPhoto(file, name) {
  const mine = picks;
  const blob = await sendable(file);
  if (mine === picks) searchPicture({ photo: { blob, name } }, URL.createObjectURL(blob));
}

function setPhotoAddress(url) {
  // never loaded here: the page asks nothing of other sites
  searchPicture({ photo: { url } }, null, `The photo at ${url}`);
}

function clearPhoto() {
  state.photo = null;
  state.choice = {};
  photo.show(null);
  run();
}

/** The photo or drawing refused by the search, taken out of the query and of the address (a reload would send it
 * again). */
function dropPicture() {
  Object.assign(state, { photo: null, drawing: null, choice: {} });
  photo.show(null);
  rememberQuery({ replace: true });
}

const MAX_LIKED = 20; // the API's cap on liked (and on disliked) products: the oldest make way

function likeProduct(hit) {
  state.like = [...new Set([...state.like, hit.product_id])].slice(-MAX_LIKED);
  state.unlike = state.unlike.filter((id) => id !== hit.product_id);
  state.photo = null;
  state.drawing = null;
  state.choice = {};
  photo.show(null);
  run();
}

function unlikeProduct(hit) {
  state.unlike = [...new Set([...state.unlike, hit.product_id])].slice(-MAX_LIKED);
  state.like = state.like.filter((id) => id !== hit.product_id);
  run();
}

function openProduct(hit) {
  shownHit = hit;
  showProduct($("product"), hit);
}

$("product-like").addEventListener("click", () => { $("product").close(); likeProduct(shownHit); });
$("product-unlike").addEventListener("click", () => { $("product").close(); unlikeProduct(shownHit); });
$("product-close").addEventListener("click", () => $("product").close());

$("words-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.text = $("words").value.trim();
  state.interpret = true;
  run({ reveal: true });
});

for (const input of [$("photo-file"), $("photo-camera")]) {
  input.addEventListener("change", () => {
    if (input.files[0]) setPhoto(input.files[0], input.files[0].name);
    input.value = "";
  });
}

$("url-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = $("photo-url").value.trim();
  if (url) setPhotoAddress(url);
});

document.addEventListener("dragover", (event) => {
  event.preventDefault();
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) document.body.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  const address = event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text/plain");
  if (file) setPhoto(file, file.name);
  else if (/^https?:\/\//.test(address.trim())) dropAddress(address.trim());
});

/** A photo dragged in from elsewhere is fetched by the gateway from its address; one of this page's own results is
 * sent by the page (the gateway fetches nothing from itself). */
async function dropAddress(address) {
  if (new URL(address).origin === location.origin) {
    try {
      const response = await fetch(address);
      if (response.ok) return setPhoto(await response.blob(), new URL(address).pathname.split("/").pop());
    } catch {
      // not reachable now: searched by its address, and the search says what went wrong
    }
  }
  setPhotoAddress(address);
}
document.addEventListener("paste", (event) => {
  const file = [...event.clipboardData.items].find((item) => item.kind === "file")?.getAsFile();
  if (file) {
    event.preventDefault();
    setPhoto(file, file.name || "pasted photo");
  }
});

// ---- the drawing

const BLANK_DRAWING = "Draw something on the canvas first.";

function selectTab(name) {
  if ($("error").textContent === BLANK_DRAWING) $("error").textContent = "";
  for (const [tab, panel] of [["tab-photo", "photo-panel"], ["tab-drawing", "drawing-panel"]]) {
    const on = tab === name;
    $(tab).setAttribute("aria-selected", String(on));
    $(tab).tabIndex = on ? 0 : -1;
    $(panel).hidden = !on;
  }
}
$("tab-photo").addEventListener("click", () => selectTab("tab-photo"));
$("tab-drawing").addEventListener("click", () => selectTab("tab-drawing"));
// the tab pattern's keys: arrows to the other tab, Home to the first, End to the last
const TAB_KEYS = { ArrowLeft: "other", ArrowRight: "other", Home: "tab-photo", End: "tab-drawing" };
for (const tab of [$("tab-photo"), $("tab-drawing")]) {
  tab.addEventListener("keydown", (event) => {
    const to = TAB_KEYS[event.key];
    if (!to) return;
    event.preventDefault();
    const next = to === "other" ? (tab.id === "tab-photo" ? "tab-drawing" : "tab-photo") : to;
    selectTab(next);
    $(next).focus();
  });
}
selectTab("tab-photo");

function pickTool(tool) {
  pad.tool = tool;
  $("pen").setAttribute("aria-pressed", String(tool === "pen"));
  $("eraser").setAttribute("aria-pressed", String(tool === "eraser"));
}
$("pen").addEventListener("click", () => pickTool("pen"));
$("eraser").addEventListener("click", () => pickTool("eraser"));
$("stroke-width").addEventListener("input", () => { pad.width = Number($("stroke-width").value); });
/** What Undo or Clear did, in words: only the canvas showed it. */
function sayDrawing(done) {
  const left = pad.strokes.length; // the eraser's too: Undo takes them one by one
  const strokes = pad.blank ? "the drawing is empty" : `${left} ${left === 1 ? "stroke" : "strokes"} left`;
  $("drawing-said").textContent = `${done}: ${strokes}.`;
}
$("undo").addEventListener("click", () => {
  const had = pad.strokes.length;
  pad.undo();
  sayDrawing(had ? "Undone" : "Nothing to undo");
});
$("clear").addEventListener("click", () => {
  pad.clear();
  sayDrawing("Cleared");
});
$("search-drawing").addEventListener("click", async () => {
  if (pad.blank) {
    $("error").textContent = BLANK_DRAWING;
    return;
  }
  searchPicture({ drawing: await pad.blob() });
});

// ---- filters, models, display

function syncPrice() {
  $("price-min").value = state.filters.price_min ?? "";
  $("price-max").value = state.filters.price_max ?? "";
  for (const input of [$("price-min"), $("price-max")]) input.removeAttribute("aria-invalid");
}

for (const [input, field, name] of [[$("price-min"), "price_min", "lowest"], [$("price-max"), "price_max", "highest"]]) {
  input.addEventListener("change", () => {
    const wrong = !input.checkValidity(); // the field's own rule (a number, 0 or more), said with its name
    input.setAttribute("aria-invalid", String(wrong));
    if (wrong) {
      $("error").textContent = `The ${name} price must be a number, 0 or more.`;
      return;
    }
    if (input.value === "") delete state.filters[field];
    else state.filters[field] = Number(input.value);
    run();
  });
}

async function refreshFacets() {
  try {
    await showFacets($("facets"), $("price"), state.variant, state.filters, () => run());
  } catch (error) {
    $("facets").textContent = `Filters could not be loaded: ${error.message}`;
  }
}

async function refreshModels() {
  models = await loadModels();
  const served = fillPicker($("variant"), models, state.variant);
  state.variant = $("variant").value || null;
  const chosen = served.find((model) => model.name === state.variant);
  if (chosen) showCard($("card-fields"), chosen);
  const others = models.filter((model) => !searchable(model));
  $("unavailable").replaceChildren(
    ...others.map((model) => {
      const line = document.createElement("p");
      line.className = "muted";
      line.textContent = `${model.name}: ${model.problem || "registered; holds no products yet"}`;
      return line;
    }),
  );
}

// newly trained variants appear in the picker, and the card's counts are today's
const MODELS_EVERY_MS = 60_000;
setInterval(() => refreshModels().catch(() => {}), MODELS_EVERY_MS);
$("model-card").addEventListener("toggle", () => $("model-card").open && refreshModels().catch(() => {}));
$("variant").addEventListener("change", async () => {
  state.variant = $("variant").value;
  await refreshModels();
  await refreshFacets();
  run();
});
$("show-scores").addEventListener("change", () => {
  const scores = $("show-scores").checked;
  document.body.classList.toggle("show-scores", scores);
  for (const open of results.querySelectorAll(".open")) nameCard(open, scores);
});
more.addEventListener("click", () => run({ append: true }));

// ---- the query in the address: shared links and the back button

/** The query in the address, as a new history entry (`replace`: in place of the current one). */
function rememberQuery({ replace = false } = {}) {
  const params = new URLSearchParams();
  if (state.text) params.set("q", state.text);
  if (state.photo?.url) {
    params.set("photo", state.photo.url); // a photo from this device stays in the history, not in a shared link
    if (state.choice.garment) params.set("garment", state.choice.garment);
    if (state.choice.box) params.set("box", state.choice.box.join(","));
  }
  for (const id of state.like) params.append("like", id);
  for (const id of state.unlike) params.append("unlike", id);
  for (const [field, value] of Object.entries(state.filters)) {
    for (const one of [].concat(value)) params.append(`filter.${field}`, String(one));
  }
  if (state.variant) params.set("variant", state.variant);
  if (!state.interpret) params.set("interpret", "false");
  if (!state.guess) params.set("guess", "false");
  const address = `${location.pathname}${params.size ? `?${params}` : ""}`;
  const local = { photo: state.photo?.blob ? state.photo : null, drawing: state.drawing, choice: state.choice };
  const shown = pictures.get(history.state?.entry);
  // the same query again (the same words sent twice, the chip already pressed) is no new step to go back to
  const same = address === `${location.pathname}${location.search}` && shown && samePicture(shown, local);
  entries += 1;
  const entry = `${LOAD}:${entries}`;
  pictures.set(entry, local);
  pictures.delete(`${LOAD}:${entries - PICTURES_KEPT}`);
  if (replace || same) history.replaceState({ entry }, "", address);
  else history.pushState({ entry }, "", address);
}

function samePicture(one, other) {
  return one.photo === other.photo && one.drawing === other.drawing && JSON.stringify(one.choice) === JSON.stringify(other.choice);
}

function readQuery() {
  const params = new URLSearchParams(location.search);
  const local = pictures.get(history.state?.entry) || {};
  state.text = params.get("q") || "";
  state.photo = local.photo || (params.get("photo") ? { url: params.get("photo") } : null);
  state.drawing = local.drawing || null;
  const box = params.get("box");
  const shared = params.get("garment") ? { garment: params.get("garment") } : box ? { box: box.split(",").map(Number) } : {};
  state.choice = state.photo ? local.choice || shared : {};
  state.like = params.getAll("like");
  state.unlike = params.getAll("unlike");
  state.filters = {};
  for (const [key, value] of params) {
    if (!key.startsWith("filter.")) continue;
    const field = key.slice("filter.".length);
    if (field === "price_min" || field === "price_max") state.filters[field] = Number(value);
    else if (field === "in_stock") state.filters.in_stock = value === "true";
    else state.filters[field] = [...(state.filters[field] || []), value];
  }
  state.variant = params.get("variant") || state.variant;
  if (state.variant && [...$("variant").options].some((option) => option.value === state.variant)) {
    $("variant").value = state.variant;
  }
  state.interpret = params.get("interpret") !== "false";
  state.guess = params.get("guess") !== "false";
  $("words").value = state.text;
  syncPrice();
  if (state.photo?.blob) photo.show(URL.createObjectURL(state.photo.blob));
  else if (state.photo?.url) photo.show(null, `The photo at ${state.photo.url}`);
  else photo.show(null);
}

window.addEventListener("popstate", async () => {
  ticket++; // the search Back (or Forward) left paints nothing, nor takes a photo away, while Back's filters come
  picks++; // nor does a photo picked before, still being shrunk
  readQuery();
  const before = asked;
  await refreshFacets();
  if (asked !== before) return; // the shopper searched while the filters came: that search stands
  if (hasQuery()) run({ remember: false });
  else showNothing("Search with words, a photo or a drawing.");
});

async function start() {
  if (narrow()) $("filters-panel").open = false; // a phone shows results first
  readQuery(); // before any wait: what the shopper does meanwhile is not overwritten
  await (keyed ||= askKey());
  try {
    await refreshModels();
  } catch (error) {
    $("error").textContent = `The models could not be listed: ${error.message}`; // the search may still answer
  }
  await refreshFacets();
  // the address's query, unless the shopper searched meanwhile: a second search would take that one's place
  if (asked === 0 && hasQuery()) run({ remember: false });
}

start();
