// The variants a gateway serves, a picker with their short names, and a model card in words.

import { call } from "./api.js";

/** GET /v1/models: every registered variant, served or not, with its card. */
export function loadModels() {
  return call("/v1/models");
}

/** The variants a shopper can pick: served ones, and others with their weights here that hold products. */
export function searchable(model) {
  return model.available && (model.served || model.indexed_points > 0);
}

/** Fill a <select> with the searchable variants (their names); keep the chosen one where it still is. */
export function fillPicker(select, models, chosen) {
  const served = models.filter(searchable);
  const names = served.map((model) => model.name);
  if (names.join("\n") !== [...select.options].map((option) => option.value).join("\n")) {
    select.replaceChildren(...names.map((name) => new Option(name, name))); // rebuilt only when the list changed
  }
  for (const option of select.options) {
    const model = served.find((one) => one.name === option.value);
    option.title = `${model.backbone}, ${model.card.stage || "stage not given"}, ${model.indexed_points} photos`;
  }
  if (chosen && names.includes(chosen)) select.value = chosen;
  return served;
}

// services/models/registry.py's ModelCard fields; fields a card adds of its own show under their own names.
const LABELS = {
  stage: "Stage", description: "Description", preset: "Preset", epochs: "Epochs", optimiser: "Optimiser",
  lr: "Learning rate", loss: "Loss", batch_size: "Batch", train_data: "Training data", trained_on: "Trained on",
  metrics: "Metrics", wall_time_s: "Wall time (s)", hardware: "Hardware",
};

/** A card's fields as [label, value]; a card it was built on (`base_card`: the image tower's, under a text
 * alignment's) follows with its own fields, each marked as the base's. */
function cardRows(card, prefix) {
  return Object.entries(card).flatMap(([key, value]) =>
    key === "base_card" && value && typeof value === "object"
      ? cardRows(value, "Base model: ")
      : [[`${prefix}${LABELS[key] || key}`, value]],
  );
}

function words(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (Array.isArray(value)) {
    if (value.some((item) => item && typeof item === "object")) return `${value.length} records`; // a history
    return value.length ? value.map(words).join(", ") : "—";
  }
  if (typeof value === "number") return String(Number(value.toPrecision(4)));
  if (typeof value === "object") {
    const entries = Object.entries(value);
    return entries.length ? entries.map(([key, inner]) => `${key} ${words(inner)}`).join("; ") : "—";
  }
  return String(value);
}

/** A model's card as <dt>/<dd> pairs: what the card holds, in its own order, plus what the gateway knows. */
export function showCard(list, model) {
  const rows = [
    ["Name", model.name],
    ["Backbone", model.backbone],
    ["Embedding size", model.embedding_dim],
    ["Photos indexed", model.indexed_points],
    ...cardRows(model.card, ""),
  ];
  list.replaceChildren(
    ...rows.flatMap(([label, value]) => {
      const term = document.createElement("dt");
      term.textContent = label;
      const detail = document.createElement("dd");
      detail.textContent = words(value);
      return [term, detail];
    }),
  );
}
