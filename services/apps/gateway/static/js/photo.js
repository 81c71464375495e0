// The query photo beside the results: the garments the API found as boxes and chips, and a box the shopper drags.
// Boxes are in the pixels of the photo as sent (the API's "regions" and "box").

const GARMENTS = { upper: "Top", lower: "Bottom", full: "Full outfit", feet: "Shoes", box: "Your box" };
const MIN_SIDE = 16; // the API's smallest box side

export class QueryPhoto {
  /** `pick(choice)`: {garment} or {box} or {} (the whole photo), chosen by the shopper. */
  constructor(figure, pick) {
    this.figure = figure;
    this.image = figure.querySelector("#query-image");
    this.overlay = figure.querySelector("#box-overlay");
    this.chips = figure.querySelector("#regions");
    this.pick = pick;
    this.drag = null;
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
    if (boxed) chips.push(this.chip(GARMENTS.box, true, () => {}));
    // garments found, or a box drawn, are parts of the photo (on a photo with none found, the garment chips beside a
    // box still say what the whole photo shows)
    const parts = found.length || boxed;
    this.chips.setAttribute("aria-label", parts ? "Part of the photo to search" : "What the photo shows");
    const focused = this.chips.contains(document.activeElement); // a chip pressed: focus stays on the one now pressed
    this.chips.replaceChildren(whole, ...chips);
    if (focused) this.chips.querySelector('[aria-pressed="true"]')?.focus();
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
    this.drag = { from: this.pixel(event), element: null };
  }

  moveBox(event) {
    if (!this.drag) return;
    this.drag.element?.remove();
    this.drag.element = this.drawBox(ordered(this.drag.from, this.pixel(event)), true);
  }

  endBox(event) {
    if (!this.drag) return;
    const box = ordered(this.drag.from, this.pixel(event));
    this.drag.element?.remove();
    this.drag = null;
    if (box[2] - box[0] >= MIN_SIDE && box[3] - box[1] >= MIN_SIDE) this.pick({ box });
  }
}

function ordered([ax, ay], [bx, by]) {
  return [Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by)];
}

function sameRegion(region, searched) {
  return Boolean(searched) && region.garment === searched.garment && region.box.join() === searched.box.join();
}
