"""Garments in a photo of a person: where the upper-body garment, the lower one, the full-length outfit and the
shoes are, so that a search can look at the garment rather than at the pose, the face and the background.

The regions come from BlazePose's lite landmark model (`pose_landmark_lite.tflite`, from npm's @mediapipe/pose,
which deploy/setup.sh and the Dockerfile install: nothing is downloaded at run time), run by LiteRT on the whole
photo and cut down to the outputs read (measured on one core: about 5 ms a photo; the full model, in the mediapipe
wheel, 8).
MediaPipe's own pipeline first runs a person detector to frame the person; a shop's photo of a person is already
framed on them, so the detector (about 11 ms) and MediaPipe's graph are left out.
Alone, the full landmark model saw people in a third of the shoes, bags and caps of a catalogue; MediaPipe's selfie
segmentation (`selfie_segmentation.tflite`, inside the mediapipe 0.10.x wheel, about 4 ms) says first whether a
person fills enough of the photo, so a photo without one (a packshot) has no regions and costs no landmark pass.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image
from scipy import ndimage

from services.errors import InvalidInput

Garment = Literal["upper", "lower", "full", "feet"]
GARMENTS: tuple[Garment, ...] = ("upper", "lower", "full", "feet")
# a garment found, a box the shopper drew, or the part of the photo a person fills (`Person.frame`)
Part = Garment | Literal["box", "person"]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the photo, x1 and y1 exclusive
MIN_VISIBILITY = 0.5  # a landmark the model is less sure of than this does not place a region
MIN_SIDE = 16  # pixels: a smaller region is no garment worth searching
# Parts of the segmentation's mask (256 pixels a side) with a gap of at most this many pixels between them are one
# person's: a mask may come in parts (a leg, the torso), while people standing apart are apart (docs/benchmarks.md, "A
# person who fills little of the photo").
GAP = 16
# A body seen from the side is about half as deep as its torso is tall (shoulders to hips), where its shoulders and
# hips, one behind the other, span a few pixels: the upper and full-length boxes are at least that wide (seen from the
# front the shoulders are wider). The lower box keeps the pelvis's width: widened to this, it cost skirts on photos
# of people (docs/benchmarks.md).
MIN_DEPTH = 0.5
# BlazePose landmark indices.
SHOULDERS, ELBOWS, WRISTS, HIPS, KNEES, ANKLES, HEELS, TOES = (
    (11, 12),
    (13, 14),
    (15, 16),
    (23, 24),
    (25, 26),
    (27, 28),
    (29, 30),
    (31, 32),
)


@dataclass(frozen=True)
class Region:
    garment: Part
    box: Box
    score: float  # how visible the landmarks that place it are (0-1)

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@dataclass(frozen=True)
class Person:
    """The garments' regions a photo shows of a person, largest first (none: no person, e.g. a packshot), and where
    the person fills little of the photo (a street photo, a landscape one), the part of it they fill (`frame`)."""

    regions: list[Region]
    frame: Box | None = None

    def region(self, garment: Garment) -> Region | None:
        return next((region for region in self.regions if region.garment == garment), None)


class RegionFinder(Protocol):
    def find(self, picture: Image.Image) -> Person: ...


class PoseRegions:
    """The selfie segmentation's say whether a person is there, then BlazePose's landmarks, on one photo at a time (a
    LiteRT interpreter is not safe to share between threads: one lock) and one thread each: a search embeds the
    photo beside them on the others."""

    INPUT = 256  # the landmark model's square input, in pixels
    MARGIN = 1.5  # the square it sees: the photo's longer side this many times, the photo in its middle
    # Of what the landmark model sees (the photo, or a person's frame), the pixels the segmentation must call a
    # person's.
    MIN_PERSON_SHARE = 0.1
    # A person whose frame (the box of the pixels the segmentation calls theirs, widened by `FRAME_PAD`) covers less
    # than this share of the photo is framed: the landmark model sees that frame, not the whole photo, and a search
    # of the photo whole reads it (docs/benchmarks.md, "A person who fills little of the photo"). A shop's photo of a
    # person is framed on them already: the 5th percentile of In-shop's frames is 0.45 of the photo, of the
    # catalogue's apparel photos' 0.38.
    FRAMED = 1 / 3
    FRAME_PAD = (0.1, 0.05)  # of the person's width on either side, of their height above and below
    MIN_FRAMED_SHARE = 0.03  # of the photo's pixels a framed person's at least
    MIN_PRESENCE = 0.8  # the landmark model's own score that a person is in what it sees (filling less than a fifth)
    # A person filling this share of what it sees or more needs less of that score: a shop's model seen from the
    # back or the side often scores below 0.8 (docs/benchmarks.md, "Which photos have a person"); a framed person
    # mostly fills a fifth of their frame (they stand, their frame is no wider: shoes lying flat are).
    FILLING_SHARE, MIN_PRESENCE_FILLING = 0.2, 0.4

    def __init__(self, min_visibility: float = MIN_VISIBILITY) -> None:
        self.min_visibility = min_visibility
        self._models: tuple[Any, Any] | None = None  # segmentation, landmarks
        self._unloadable: str | None = None  # why the models failed to load: not tried again at every photo
        self._lock = threading.Lock()

    @staticmethod
    def installed() -> bool:
        """Whether the models' files and their runtime (LiteRT) are here (deploy/setup.sh installs them)."""
        paths = [model_path(name) for name in OUTPUTS]
        return all(path is not None and path.is_file() for path in paths) and bool(find_spec("ai_edge_litert"))

    def close(self) -> None:
        with self._lock:
            self._models = None

    def find(self, picture: Image.Image) -> Person:
        width, height = picture.size
        picture = picture.convert("RGB")
        with self._lock:
            segmentation, landmarks = self._models = self._models or self._loaded()  # raises once loading failed
            side = segmentation.get_input_details()[0]["shape"][1:3]  # the whole photo, squeezed to its input
            squeezed = picture.resize((side[1], side[0]), Image.Resampling.BILINEAR)
            (person,) = _outputs(segmentation, squeezed).values()  # one output: how sure each pixel is a person's
            mask = person.reshape(side[0], side[1]) > 0.5
            # of what the landmark model sees, the share that is the person's: of the photo, or of their frame
            share, frame = float(mask.mean()), None
            if share >= self.MIN_FRAMED_SHARE:  # else no one fills enough to frame (a packshot): not parted
                alone = _main_person_mask(mask)  # framed, the person the photo is of, not the others beside them
                theirs = float(alone.mean())
                if theirs >= self.MIN_FRAMED_SHARE and (frame := self._frame(alone, width, height)):
                    share = theirs / _area_share(frame, width, height)
            if share < self.MIN_PERSON_SHARE:
                return Person([])  # a packshot: no square framed, no landmark pass
            x0, y0, x1, y1 = frame or (0, 0, width, height)
            # the landmark model sees the frame shrunk (a long one stays cheap) in the middle of a black square
            shrink = self.INPUT / (self.MARGIN * max(x1 - x0, y1 - y0))
            shown = (max(1, round((x1 - x0) * shrink)), max(1, round((y1 - y0) * shrink)))
            left, top = (self.INPUT - shown[0]) // 2, (self.INPUT - shown[1]) // 2
            square = Image.new("RGB", (self.INPUT, self.INPUT))
            square.paste(picture.crop((x0, y0, x1, y1)).resize(shown, Image.Resampling.BILINEAR), (left, top))
            found = _outputs(landmarks, square)  # its presence and landmarks: all it computes
        presence, marks = found[PRESENCE], found[LANDMARKS]
        least = self.MIN_PRESENCE_FILLING if share >= self.FILLING_SHARE else self.MIN_PRESENCE
        if float(presence.ravel()[0]) < least:
            return Person([])
        marks = marks.reshape(-1, 5)[:33]  # x, y (input pixels), z, visibility, presence (logits)
        visibility = 1 / (1 + np.exp(-np.clip(marks[:, 3], -30, 30)))
        # placed in the frame as in a photo of its own (a leg leaving it ends there), then in the photo
        xs, ys = (marks[:, 0] - left) * (x1 - x0) / shown[0], (marks[:, 1] - top) * (y1 - y0) / shown[1]
        points = np.stack([xs, ys, visibility], axis=1)
        regions = [
            Region(region.garment, _moved(region.box, x0, y0), region.score)
            for region in garment_regions(points, x1 - x0, y1 - y0, self.min_visibility)
        ]
        return Person(regions, frame if regions else None)

    def _frame(self, mask: np.ndarray, width: int, height: int) -> Box | None:
        """The part of the photo a person stands in, from their pixels in the segmentation's mask (of any size), where
        it is less than `FRAMED` of the photo; None where they fill more, lie across it, or nothing is a person's."""
        rows, columns = np.nonzero(mask)
        if not len(rows):
            return None
        x0, x1 = columns.min() * width / mask.shape[1], (columns.max() + 1) * width / mask.shape[1]
        y0, y1 = rows.min() * height / mask.shape[0], (rows.max() + 1) * height / mask.shape[0]
        pad_x, pad_y = self.FRAME_PAD[0] * (x1 - x0), self.FRAME_PAD[1] * (y1 - y0)
        frame = (
            max(0, int(x0 - pad_x)),
            max(0, int(y0 - pad_y)),
            min(width, int(np.ceil(x1 + pad_x))),
            min(height, int(np.ceil(y1 + pad_y))),
        )
        wide, tall = frame[2] - frame[0], frame[3] - frame[1]
        # framed only standing (at least as tall as wide): a shoe or a bag lying flat, which the segmentation can take
        # for a small person, is wider (docs/benchmarks.md)
        return frame if _area_share(frame, width, height) < self.FRAMED and tall >= wide >= MIN_SIDE else None

    def _loaded(self) -> tuple[Any, Any]:
        """The segmentation's and the landmark model's interpreters (loaded when a photo first needs them)."""
        if self._unloadable is not None:
            raise RuntimeError(f"the pose models failed to load: {self._unloadable}")
        try:
            return _model("segmentation"), _model("landmarks")
        except Exception as error:
            self._unloadable = f"{type(error).__name__}: {error}"
            raise


# npm's @mediapipe/pose (Apache-2.0) is the one package that carries the lite landmark model (no wheel does):
# deploy/setup.sh and the Dockerfile put its file here, beside the Python packages.
LANDMARK_MODEL = Path(sys.prefix, "share", "stylefinder", "pose_landmark_lite.tflite")
# The outputs read of each model (none: its only one). The landmark model also draws a person's mask, heatmaps
# and landmarks in metres: cut down to its landmarks and presence, it takes 4.6 ms a photo instead of 10 on one
# LiteRT thread (the full model: 8.4 instead of 13.8), with the same outputs (docs/benchmarks.md, "Every kind of
# query").
PRESENCE, LANDMARKS = "Identity_1", "Identity"  # the landmark model's outputs read, by name
OUTPUTS: dict[str, tuple[str, ...] | None] = {"segmentation": None, "landmarks": (PRESENCE, LANDMARKS)}


def model_path(name: str) -> Path | None:
    """Where a model's file is installed (None: the mediapipe wheel that carries the segmentation is not)."""
    if name == "landmarks":
        return LANDMARK_MODEL
    spec = find_spec("mediapipe")  # finds the package without importing it
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "modules" / "selfie_segmentation" / "selfie_segmentation.tflite"


def _model(name: str) -> Any:
    """A model's interpreter on one thread, computing the outputs read only, ready to run."""
    from ai_edge_litert.interpreter import Interpreter

    path, outputs = model_path(name), OUTPUTS[name]
    assert path is not None, "PoseRegions.installed() is checked before a model is loaded"
    content = path.read_bytes()
    model = Interpreter(model_content=cut_to(content, outputs) if outputs else content, num_threads=1)
    model.allocate_tensors()
    return model


def cut_to(content: bytes, outputs: Sequence[str]) -> bytes:
    """A LiteRT model (a .tflite file's bytes) that computes only the named outputs: LiteRT runs every operator of
    a graph, read or not, so those that no named output depends on are dropped."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    if len(model.subgraphs) != 1 or model.signatureDefs:
        raise ValueError("only a model of one graph and no signatures is cut (others may call or name what is cut)")
    graph = model.subgraphs[0]
    if any(not operator.outputs for operator in graph.operators):
        raise ValueError("the model has operators without outputs (stateful ones), which cutting would drop")
    kept = [tensor for tensor in graph.outputs if graph.tensors[tensor].name.decode() in outputs]
    if len(kept) != len(set(outputs)):
        known = [graph.tensors[tensor].name.decode() for tensor in graph.outputs]
        raise ValueError(f"the model's outputs are {known}, not all of {list(outputs)}")
    made_by = {tensor: index for index, operator in enumerate(graph.operators) for tensor in operator.outputs}
    needed: set[int] = set()
    pending = list(kept)
    while pending:
        operator = made_by.get(pending.pop())  # None: an input or a weight
        if operator is not None and operator not in needed:
            needed.add(operator)
            pending.extend(tensor for tensor in graph.operators[operator].inputs if tensor >= 0)
    graph.operators = [operator for index, operator in enumerate(graph.operators) if index in needed]
    graph.outputs = kept
    builder = flatbuffers.Builder(len(content))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _outputs(model: Any, picture: Image.Image) -> dict[str, np.ndarray]:
    """A model's outputs by name on a picture of its input's size, as pixels 0-1."""
    model.set_tensor(model.get_input_details()[0]["index"], np.asarray(picture, dtype=np.float32)[None] / 255)
    model.invoke()
    indices = {detail["name"]: detail["index"] for detail in model.get_output_details()}
    return {name: model.get_tensor(index) for name, index in indices.items()}


def garment_regions(
    points: np.ndarray, width: int, height: int, min_visibility: float = MIN_VISIBILITY
) -> list[Region]:
    """Regions from BlazePose landmarks (x, y in pixels, visibility), largest first. The upper garment spans the
    shoulders to the hips and the arms; the lower one the hips to the ankles (to the photo's edge when the legs
    leave it), placed by knees seen or inside the photo, as wide as the pelvis at least (inside the photo); full
    length both; the feet the ankles, heels and toes. Seen from the side, the upper and full-length boxes are as wide
    as the body is deep (`MIN_DEPTH`) at least."""

    def seen(*groups: tuple[int, ...]) -> bool:
        return all(points[i, 2] >= min_visibility for group in groups for i in group)

    def score(*groups: tuple[int, ...]) -> float:
        return float(min(points[i, 2] for group in groups for i in group))

    def span(*groups: tuple[int, ...]) -> tuple[float, float, float, float]:
        chosen = points[[i for group in groups for i in group]]
        return chosen[:, 0].min(), chosen[:, 1].min(), chosen[:, 0].max(), chosen[:, 1].max()

    def box(x0: float, y0: float, x1: float, y1: float) -> Box:
        return (max(0, int(x0)), max(0, int(y0)), min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1))))

    def across(x0: float, x1: float, joints: tuple[int, ...], least: float) -> tuple[float, float]:
        """x0 to x1, widened to `least` about the joints' middle where narrower."""
        middle = float(points[list(joints), 0].mean())
        return min(x0, middle - least / 2), max(x1, middle + least / 2)

    regions: list[Region] = []
    if not seen(SHOULDERS, HIPS):
        return regions
    torso = max(1.0, float(points[list(HIPS), 1].mean() - points[list(SHOULDERS), 1].mean()))
    shoulder_y = float(points[list(SHOULDERS), 1].min())
    hip_y = float(points[list(HIPS), 1].mean())
    arms = [group for group in (ELBOWS, WRISTS) if seen(group)]
    x0, _, x1, _ = span(SHOULDERS, HIPS, *arms)
    pad = 0.1 * (x1 - x0)
    x0, x1 = across(x0 - pad, x1 + pad, SHOULDERS + HIPS, MIN_DEPTH * torso)
    regions.append(Region("upper", box(x0, shoulder_y - 0.2 * torso, x1, hip_y + 0.15 * torso), score(SHOULDERS, HIPS)))
    legs = [group for group in (KNEES, ANKLES) if seen(group)]
    if KNEES not in legs and all(0 <= points[i, 1] < height for i in KNEES):
        legs.insert(0, KNEES)  # inside the photo however unsure the model is (it is near the photo's edge): legs show
    if KNEES in legs:
        bottom = float(points[list(ANKLES), 1].max()) + 0.1 * torso if ANKLES in legs else float(height)
        lx0, _, lx1, _ = span(HIPS, *legs)
        lpad = 0.25 * (lx1 - lx0)
        # the pelvis is about twice as wide as its joints are apart (horizontally): legs held together wear that much
        lx0, lx1 = across(lx0 - lpad, lx1 + lpad, HIPS, 2.0 * float(np.ptp(points[list(HIPS), 0])))
        regions.append(Region("lower", box(lx0, hip_y - 0.2 * torso, lx1, bottom), score(HIPS, KNEES)))
        fx0, _, fx1, _ = span(SHOULDERS, HIPS, *arms, *legs)
        fpad = 0.1 * (fx1 - fx0)
        fx0, fx1 = across(fx0 - fpad, fx1 + fpad, SHOULDERS + HIPS, MIN_DEPTH * torso)
        regions.append(Region("full", box(fx0, shoulder_y - 0.2 * torso, fx1, bottom), score(SHOULDERS, HIPS, KNEES)))
    if seen(ANKLES, HEELS, TOES):
        sx0, sy0, sx1, sy1 = span(ANKLES, HEELS, TOES)
        spad = 0.3 * max(sx1 - sx0, sy1 - sy0, 0.2 * torso)
        regions.append(Region("feet", box(sx0 - spad, sy0 - spad, sx1 + spad, sy1 + spad), score(ANKLES, HEELS, TOES)))
    kept = [r for r in regions if r.box[2] - r.box[0] >= MIN_SIDE and r.box[3] - r.box[1] >= MIN_SIDE]
    return sorted(kept, key=lambda region: -region.area)


def _main_person_mask(mask: np.ndarray) -> np.ndarray:
    """Of the segmentation's mask, the pixels of the person a photo of several is of: the parts `GAP` joins that hold
    most of its pixels, not a friend or passers-by standing apart (the frame of all would be a group's); all of them
    where no such person stands out."""
    groups, count = ndimage.label(ndimage.maximum_filter(mask, size=GAP + 1))
    pixels = np.bincount(groups[mask], minlength=count + 1)  # none in the background (0): the groups hold every pixel
    main = int(np.argmax(pixels))
    return mask & (groups == main) if pixels[main] > mask.sum() / 2 else mask


def _moved(box: Box, dx: int, dy: int) -> Box:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def _area_share(box: Box, width: int, height: int) -> float:
    return (box[2] - box[0]) * (box[3] - box[1]) / (width * height)


def clip_box(box: Sequence[float], width: int, height: int, max_aspect: float) -> Box:
    """A shopper's box in the photo's pixels, clipped to it; InvalidInput when too little of it is left to search."""
    x0, y0, x1, y1 = (round(value) for value in box)
    clipped = (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
    sides = (clipped[2] - clipped[0], clipped[3] - clipped[1])
    if min(sides) < MIN_SIDE:
        raise InvalidInput(
            f"box {list(box)} leaves less than {MIN_SIDE} pixels a side inside the photo ({width}x{height})"
        )
    if max(sides) > max_aspect * min(sides):
        raise InvalidInput(f"box {list(box)} is too narrow: its sides may differ {max_aspect:g} times at most")
    return clipped


def scaled(box: Sequence[float], factor: float) -> Box:
    """A box in another frame of the same photo (e.g. the decoded pixels and the photo as sent)."""
    return (int(box[0] * factor), int(box[1] * factor), int(np.ceil(box[2] * factor)), int(np.ceil(box[3] * factor)))
