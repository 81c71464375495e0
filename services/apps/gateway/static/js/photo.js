// The query photo beside the results: the garments the API found as boxes and chips, and a box the shopper drags,
// clicks corner to corner, or moves and sizes with the keyboard. Boxes are in the pixels of the photo as sent (the
// API's "regions" and "box").

const GARMENTS = { upper: "Top", lower: "Bottom", full: "Full outfit", feet: "Shoes", box: "Your box" };
const MIN_SIDE = 16; // the API's smallest box side
const STEP = 20; // an arrow key moves or sizes the keyboard's box by a twentieth of the photo
const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

// A photo this large is redrawn smaller on this device before it is sent: a phone's 108-megapixel photo is 20 MB or
// more (past what the API takes in bytes), and the search reads a few hundred pixels of it anyway.
const SHRINK_OVER_BYTES = 8 * 1024 * 1024;
const SHRUNK_SIDE = 4096;

/** The photo as it is sent and shown: a big one as a JPEG at most SHRUNK_SIDE pixels long (upright, on white); one
 * this browser cannot read (a HEIC outside Safari) as it is, for the search to read or refuse. */
export async function sendable(blob) {
  if (blob.size <= SHRINK_OVER_BYTES) return blob;
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch {
    return blob;
  }
  const scale = Math.min(1, SHRUNK_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff"; // a transparent PNG's background, as the API flattens it
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const redrawn = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  return redrawn && redrawn.size < blob.size ? redrawn : blob;
}

export class QueryPhoto {
  /** `pick(choice)`: {garment} or {box} or {} (the whole photo), chosen by the shopper. */
  constructor(figure, pick) {
    this.figure = figure;
    this.image = figure.querySelector("#query-image");
    this.overlay = figure.querySelector("#box-overlay");
    this.chips = figure.querySelector("#regions");
    this.pick = pick;
    this.drag = null; // a press on the photo: {from, element}
    this.corner = null; // a click's corner, waiting for the opposite one
    this.draft = null; // the keyboard's box: {box, element}
    // A photo this browser cannot show (a HEIC outside Safari) is still searched: say so where it would be (a
    // file that is no photo at all is refused by the search, which then takes it away).
    this.image.addEventListener("error", () => {
      if (!this.image.getAttribute("src")) return;
      this.figure.querySelector(".query-photo").hidden = true;
      this.figure.querySelector("#box-hint").hidden = true;
      this.figure.querySelector("#photo-caption").textContent = "This browser cannot show your photo.";
    });
    this.overlay.addEventListener("pointerdown", (event) => this.startBox(event));
    this.overlay.addEventListener("pointermove", (event) => this.moveBox(event));
    this.overlay.addEventListener("pointerup", (event) => this.endBox(event));
    this.overlay.addEventListener("keydown", (event) => this.keyBox(event));
    this.overlay.addEventListener("focus", () => this.image.naturalWidth && this.showDraft(this.middle()));
    this.overlay.addEventListener("blur", () => this.dropDraft());
  }

  /** Show a photo (an object URL), or only a caption for one not shown (a photo's address); null, null hides. */
  show(source, caption = null) {
    const shown = Boolean(source || caption);
    this.figure.hidden = !shown;
    this.figure.parentElement.classList.toggle("no-photo", !shown);
    this.figure.querySelector(".query-photo").hidden = !source;
    this.figure.querySelector("#box-hint").hidden = !source;
    this.figure.querySelector("#photo-caption").textContent = caption || "";
    this.chips.replaceChildren();
    this.clearBoxes();
    if (source) this.image.src = source;
    else this.image.removeAttribute("src");
  }

  clearBoxes() {
    for (const box of this.figure.querySelectorAll(".box")) box.remove();
    this.corner = null;
    this.draft = null;
  }

  /** A search's answer on the photo: the garments found (boxes), the part searched, and a chip for each garment the
   * photo may be searched by (`garments`: on a photo with no person found, every one, as what the whole photo
   * shows); `picked`: the garment the shopper picked, where no region found stands for it. */
  regions({ regions: found, region: searched, garments }, picked) {
    this.clearBoxes();
    const all = [...found];
    const boxed = Boolean(searched) && searched.garment === "box";
    if (boxed) all.push(searched);
    for (const region of all) {
      this.drawBox(region.box, sameRegion(region, searched), region.garment);
    }
    // "person": the whole photo was searched, framed on the person who fills little of it
    const whole = this.chip("Whole photo", !picked && (!searched || searched.garment === "person"), () => this.pick({}));
    const order = Object.keys(GARMENTS); // the same order on every photo, whatever order they were found in
    const sorted = [...garments].sort((a, b) => order.indexOf(a) - order.indexOf(b));
    const chips = sorted.map((garment) => {
      const region = found.find((one) => one.garment === garment);
      const pressed = region ? sameRegion(region, searched) : garment === picked;
      return this.chip(GARMENTS[garment] || garment, pressed, () => this.pick({ garment }));
    });
    if (boxed) chips.push(this.chip(GARMENTS.box, true, () => this.pick({ box: searched.box })));
    // garments found, or a box drawn, are parts of the photo (on a photo with none found, the garment chips beside a
    // box still say what the whole photo shows)
    const parts = found.length || boxed;
    this.chips.setAttribute("aria-label", parts ? "Part of the photo to search" : "What the photo shows");
    const focused = this.chips.contains(document.activeElement); // a chip pressed: focus stays on the one now pressed
    this.chips.replaceChildren(whole, ...chips);
    if (focused) this.chips.querySelector('[aria-pressed="true"]')?.focus();
    if (document.activeElement === this.overlay) {
      // the keys go on from the box searched (drawn above: the next key draws the box moved beside it), or anew
      if (boxed) this.draft = { box: searched.box, element: null };
      else this.showDraft(this.middle());
    }
  }

  chip(text, pressed, clicked) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chip";
    button.textContent = text;
    button.setAttribute("aria-pressed", String(pressed));
    button.addEventListener("click", clicked);
    return button;
  }

  /** A box on the photo; `garment` labels it with its chip's name (the chips say which box is which). */
  drawBox([x0, y0, x1, y1], chosen, garment = null) {
    const { naturalWidth: width, naturalHeight: height } = this.image;
    if (!width || !height) return;
    const box = document.createElement("div");
    box.className = chosen ? "box chosen" : "box";
    box.setAttribute("aria-hidden", "true"); // the chips say what is found and picked, in words
    if (garment && garment !== "person") {
      box.dataset.garment = garment;
      box.dataset.label = GARMENTS[garment] || garment;
    }
    Object.assign(box.style, {
      left: `${(100 * x0) / width}%`, top: `${(100 * y0) / height}%`,
      width: `${(100 * (x1 - x0)) / width}%`, height: `${(100 * (y1 - y0)) / height}%`,
    });
    this.figure.querySelector(".query-photo").append(box);
    return box;
  }

  /** A pointer position in the photo's own pixels. */
  pixel(event) {
    const area = this.overlay.getBoundingClientRect();
    const x = Math.min(Math.max(event.clientX - area.left, 0), area.width);
    const y = Math.min(Math.max(event.clientY - area.top, 0), area.height);
    return [Math.round((x / area.width) * this.image.naturalWidth), Math.round((y / area.height) * this.image.naturalHeight)];
  }

  startBox(event) {
    event.preventDefault();
    this.overlay.setPointerCapture?.(event.pointerId);
    const corner = this.corner;
    this.corner = null;
    this.drag = { from: corner?.from || this.pixel(event), element: corner?.element, second: Boolean(corner) };
  }

  /** The box so far, while pressed, or from a click's corner to the pointer. */
  moveBox(event) {
    const shown = this.drag || this.corner;
    if (!shown) return;
    shown.element?.remove();
    shown.element = this.drawBox(ordered(shown.from, this.pixel(event)), true);
  }

  /** A drag, or a second click, gives a box to search; a first click (no drag) its first corner, so no dragging
   * is needed (WCAG 2.5.7). A second click where the first was takes the corner back. */
  endBox(event) {
    if (!this.drag) return;
    const { from, element, second } = this.drag;
    const box = ordered(from, this.pixel(event));
    element?.remove();
    this.drag = null;
    if (big(box)) this.pick({ box });
    else if (!second) this.corner = { from, element: this.drawBox([...from, ...from], true) };
  }

  /** A box in the middle of the photo, where the keyboard's box starts. */
  middle() {
    const { naturalWidth: width, naturalHeight: height } = this.image;
    return [width / 4, height / 4, (3 * width) / 4, (3 * height) / 4].map(Math.round);
  }

  showDraft(box) {
    this.draft?.element?.remove();
    this.draft = { box, element: this.drawBox(box, true, "box") };
  }

  dropDraft() {
    this.draft?.element?.remove();
    this.draft = null;
  }

  /** The keyboard's box: arrow keys move it, with Shift they size it (from its lower right corner), Enter or Space
   * searches it, Escape puts it back in the middle. */
  keyBox(event) {
    const { naturalWidth: width, naturalHeight: height } = this.image;
    if (!width || !height) return;
    if (!this.draft) this.showDraft(this.middle());
    const [x0, y0, x1, y1] = this.draft.box;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      this.pick({ box: this.draft.box });
    } else if (event.key === "Escape") {
      this.showDraft(this.middle());
    } else if (ARROWS[event.key]) {
      event.preventDefault();
      const dx = Math.round((ARROWS[event.key][0] * width) / STEP);
      const dy = Math.round((ARROWS[event.key][1] * height) / STEP);
      if (event.shiftKey) {
        this.showDraft([x0, y0, clamp(x1 + dx, x0 + MIN_SIDE, width), clamp(y1 + dy, y0 + MIN_SIDE, height)]);
      } else {
        const mx = clamp(dx, -x0, width - x1);
        const my = clamp(dy, -y0, height - y1);
        this.showDraft([x0 + mx, y0 + my, x1 + mx, y1 + my]);
      }
    }
  }
}

function big(box) {
  return box[2] - box[0] >= MIN_SIDE && box[3] - box[1] >= MIN_SIDE;
}

function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

function ordered([ax, ay], [bx, by]) {
  return [Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by)];
}

function sameRegion(region, searched) {
  return Boolean(searched) && region.garment === searched.garment && region.box.join() === searched.box.join();
}
