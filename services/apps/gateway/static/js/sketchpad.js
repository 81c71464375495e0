// A drawing canvas: pen and eraser, stroke width, undo, clear. The drawing is sent as a sketch (black on white).

const SIZE = 512; // the canvas's own pixels; the API crops a drawing to its strokes and redraws it anyway

export class Sketchpad {
  /** @param {HTMLCanvasElement} canvas  @param {() => void} onChange  called after each stroke, undo or clear */
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.canvas.width = SIZE;
    this.canvas.height = SIZE;
    this.context = canvas.getContext("2d", { willReadFrequently: true }); // `blank` reads its pixels
    this.strokes = [];
    this.tool = "pen";
    this.width = 6;
    this.onChange = onChange;
    this.current = null;
    canvas.addEventListener("pointerdown", (event) => this.start(event));
    canvas.addEventListener("pointermove", (event) => this.extend(event));
    for (const end of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(end, () => this.finish());
    this.redraw();
  }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return [((event.clientX - box.left) / box.width) * SIZE, ((event.clientY - box.top) / box.height) * SIZE];
  }

  start(event) {
    event.preventDefault();
    this.canvas.setPointerCapture?.(event.pointerId);
    this.current = { tool: this.tool, width: this.width * (this.tool === "eraser" ? 3 : 1), points: [this.point(event)] };
    this.strokes.push(this.current);
    this.redraw();
  }

  extend(event) {
    if (!this.current) return;
    this.current.points.push(this.point(event));
    this.redraw();
  }

  finish() {
    if (!this.current) return;
    this.current = null;
    this.onChange();
  }

  undo() {
    this.strokes.pop();
    this.redraw();
    this.onChange();
  }

  clear() {
    this.strokes = [];
    this.redraw();
    this.onChange();
  }

  /** Whether nothing is drawn: no pen stroke, or every one rubbed out with the eraser (no dark pixel left). */
  get blank() {
    if (!this.strokes.some((stroke) => stroke.tool === "pen")) return true;
    const pixels = this.context.getImageData(0, 0, SIZE, SIZE).data;
    for (let at = 0; at < pixels.length; at += 4) if (pixels[at] < 128) return false;
    return true;
  }

  redraw() {
    const ctx = this.context;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, SIZE, SIZE);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const stroke of this.strokes) {
      ctx.strokeStyle = stroke.tool === "eraser" ? "#fff" : "#000";
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = stroke.width;
      const [first, ...rest] = stroke.points;
      if (!rest.length) {
        ctx.beginPath();
        ctx.arc(first[0], first[1], stroke.width / 2, 0, 2 * Math.PI);
        ctx.fill();
        continue;
      }
      ctx.beginPath();
      ctx.moveTo(first[0], first[1]);
      for (const [x, y] of rest) ctx.lineTo(x, y);
      ctx.stroke();
    }
  }

  /** The drawing as a PNG file. */
  blob() {
    return new Promise((resolve) => this.canvas.toBlob(resolve, "image/png"));
  }
}
