"""What learns photos of people: the wearing stage (its loss against a hand computation, the people photos it learns
from and the half it never sees, a short run through the CLI that writes a servable alignment, and the shipped
variant against its base on photos of people it never trained on, searched through the API's search function) and the
kind guess (its fit, and a short run through the CLI whose file guesses photos it never saw)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from services.errors import InvalidInput
from services.evaluation import (
    PEOPLE_KINDS,
    UNNAMED_PEOPLE,
    PersonPhoto,
    catalogue_items,
    catalogue_searcher,
    encode_paths,
    people_photos,
    read_catalogue_rows,
)
from services.models import Registry, load_model
from services.regions import PoseRegions
from services.search import Found, KindGuess, SearchRequest
from tests.helpers import laid_over, run_stage_cli, shared_data
from trainer.kind_guess import KindGuessConfig, fit_softmax, fold_guesses, with_words
from trainer.losses import supcon_loss, supcon_mask_loss
from trainer.report import read_cards, results_table


def test_supcon_with_several_kinds_a_photo_matches_a_hand_computation() -> None:
    """Photo 0 (a shirt that is a catalogue's Shirts or Tshirts) is positive to photos 1 and 2; those two only to
    photo 0."""
    features = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    positives = torch.tensor([[False, True, True], [True, False, False], [True, False, False]])
    logits = (features @ features.T / 0.1).numpy()
    expected = []
    for anchor, wanted in ((0, (1, 2)), (1, (0,)), (2, (0,))):
        others = [j for j in range(3) if j != anchor]
        log_norm = np.log(np.exp(logits[anchor, others]).sum())
        expected.append(-np.mean([logits[anchor, j] - log_norm for j in wanted]))
    assert supcon_mask_loss(features, positives, 0.1).item() == pytest.approx(np.mean(expected), rel=1e-5)
    labels = torch.tensor([0, 0, 1])  # one label each: the plain SupCon
    same = labels[:, None] == labels[None, :]
    assert supcon_mask_loss(features, same, 0.1).item() == pytest.approx(supcon_loss(features, labels, 0.1).item())


def test_people_photos_name_their_kinds_and_half_of_the_items_stay_out_of_training() -> None:
    photos = people_photos(shared_data("inshop_pairs"))
    assert len(photos) >= 150
    assert {photo.folder for photo in photos} <= set(PEOPLE_KINDS)
    held = {photo.item for photo in photos if photo.held_out}
    trained = {photo.item for photo in photos if not photo.held_out}
    assert not held & trained and 0.35 < len(held) / len(held | trained) < 0.65
    skirt = next(photo for photo in photos if photo.folder == "Skirts")
    assert skirt.garment == "lower" and skirt.kinds == {"Skirts"} and skirt.word == "skirt"
    unnamed = {photo.item: photo.folder for photo in photos if photo.path.parent.parent.name == "img_pg2"}
    assert unnamed["pg2_02081"] == "Dresses" and unnamed["pg2_01371"] == "Cardigans"  # as labelled
    assert "pg2_00912" not in unnamed and len(unnamed) == len(UNNAMED_PEOPLE)  # an outfit left unlabelled stays out


def _garment(kind: str, shade: int) -> Image.Image:
    """A made-up photo: a skirt is a trapezoid low in the frame, a top a rectangle high in it."""
    picture = Image.new("RGB", (174, 256), (230, 225, 220))
    draw = ImageDraw.Draw(picture)
    draw.ellipse((70, 10, 104, 44), fill=(200, 160, 140))  # a head
    if kind == "Skirts":
        draw.polygon([(60, 130), (114, 130), (140, 220), (34, 220)], fill=(shade, 40, 90))
    else:
        draw.rectangle((45, 50, 129, 140), fill=(40, shade, 90))
    return picture


def _people_and_catalogue(tmp_path: Path) -> tuple[Path, Path]:
    """Made-up In-shop photos of people (12 items: skirts, tees; two views each) and a catalogue of 40 products."""
    inshop = tmp_path / "inshop"
    partition = ["24", "image_name item_id evaluation_status"]
    for number in range(12):
        folder, kind = ("Skirts", "Skirts") if number % 2 else ("Tees_Tanks", "Tshirts")
        item = inshop / "img" / "WOMEN" / folder / f"id_{number:08d}"
        item.mkdir(parents=True)
        for view in range(2):
            _garment(kind, 60 + 10 * number + 5 * view).save(item / f"0{view}_1_front.jpg")
            status = "gallery" if view else "query"
            partition.append(f"img/WOMEN/{folder}/{item.name}/0{view}_1_front.jpg {item.name} {status}")
    (inshop / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    catalogue = tmp_path / "catalogue"
    (catalogue / "images").mkdir(parents=True)
    rows = ["id,image,masterCategory,articleType,baseColour"]
    for index in range(40):
        kind = ("Skirts", "Tshirts", "Tops")[index % 3]
        _garment("Skirts" if kind == "Skirts" else "Tshirts", 50 + 4 * index).save(
            catalogue / "images" / f"{index}.jpg"
        )
        rows.append(f"{index},images/{index}.jpg,Apparel,{kind},Blue")
    (catalogue / "metadata.csv").write_text("\n".join(rows) + "\n")
    return inshop, catalogue


def test_a_short_run_through_the_cli_writes_a_servable_alignment(tmp_path: Path, tiny_env: dict[str, str]) -> None:
    inshop, catalogue = _people_and_catalogue(tmp_path)
    out = tmp_path / "wearing.pt"
    result = run_stage_cli(
        tiny_env,
        *("train-wearing", "--inshop", str(inshop), "--catalogue", str(catalogue), "--base", "effl0-minilm"),
        *("--steps", "3", "--consistency", "2", "--bench-products", "9", "--out", str(out)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "people_kind_P@10" in result.stdout and "(before" in result.stdout
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["base_variant"] == "effl0-minilm" and card["history"][-1]["step"] == 3
    assert card["config"]["consistency"] == 2.0 and "2.0 x semantic consistency" in card["loss"]
    held = sum(photo.held_out for photo in people_photos(inshop))
    assert 0 < held < 24 and card["metrics"]["people_held_out"] == held  # scored on the held-out items' photos only
    assert 0 <= card["metrics"]["R@1"] <= 1 and "mAP" in card["zero_shot"]
    assert f"{24 - held} photos of people" in card["trained_on"]["inshop"]
    runs = Path(tiny_env["STYLEFINDER_DATA_DIR"]) / "runs"  # its run card, where `stylefinder report` reads them
    assert json.loads((runs / "effl0-minilm-wearing.json").read_text())["card"]["metrics"] == card["metrics"]
    row = next(line for line in results_table(read_cards(runs)).splitlines() if "effl0-minilm-wearing" in line)
    assert "efficientnet_lite0 | wearing" in row and f"{card['metrics']['people_kind_P@10']:.3f}" in row
    assert "| 3 steps | " in row  # a stage that counts steps says so, not "0" epochs
    assert "past its first 9 apparel products" in card["trained_on"]["catalogue"]
    tensors = torch.load(out, weights_only=True)
    assert "text.proj.weight" in tensors and "visual.head.proj.weight" in tensors  # words keep working
    served = laid_over("effl0-minilm", out, tmp_path)
    base = load_model(Registry.load()["effl0-minilm"], "cpu", runtime="torch")
    assert served.variant.card.stage.startswith("wearing")
    weight = served.model.visual.head.proj.weight.detach()
    np.testing.assert_allclose(weight.numpy(), tensors["visual.head.proj.weight"].float().numpy(), atol=1e-6)
    assert not torch.equal(weight, base.model.visual.head.proj.weight.detach())  # it learnt
    front = "visual.trunk.blocks.0.0.conv_dw.weight"
    assert torch.equal(served.model.state_dict()[front], base.model.state_dict()[front])  # the front did not


def _kind_precision(photos: list[PersonPhoto], found: list[Found]) -> float:
    """P@10 of the kinds worn, averaged over the photos of people."""
    scores = [
        np.mean([hit.payload.get("category") in p.kinds for hit in f.hits]) for p, f in zip(photos, found, strict=True)
    ]
    return float(np.mean(scores))


def test_the_shipped_wearing_variant_puts_photos_of_people_among_their_kind() -> None:
    """The In-shop items it never trained on, searched whole (no garment named) against apparel products it never
    trained on (the bench's catalogue), through the API's search function: their kind fills more of the top 10
    than with its base, and a packshot still finds itself first."""
    registry = Registry.load()
    photos = [photo for photo in people_photos(shared_data("inshop_pairs")) if photo.held_out]
    rows = [r for r in read_catalogue_rows(shared_data("myntra") / "metadata.csv") if r["masterCategory"] == "Apparel"]
    items = catalogue_items(rows[:500])
    precision = {}
    for name in ("effl2-minilm-tuned", "effl2-minilm-wearing"):
        model = load_model(registry[name], "cpu")
        vectors, _ = encode_paths(model.encode_images, [Path(item.images[0]) for item in items], False, name)
        with catalogue_searcher(model, items, vectors) as searcher:
            found = [searcher.search(SearchRequest.with_upload(top_k=10), name, p.path.read_bytes()) for p in photos]
            own = searcher.search(SearchRequest.with_upload(top_k=1), name, Path(items[7].images[0]).read_bytes())
        precision[name] = _kind_precision(photos, found)
        assert own.hits[0].product_id == items[7].id
    assert precision["effl2-minilm-wearing"] >= precision["effl2-minilm-tuned"] + 0.05, precision


def test_softmax_fit_separates_what_it_is_given_and_weighs_each_example() -> None:
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 1])
    matrix, bias = fit_softmax(vectors, labels, np.ones(4), 2, 1.0, 200)
    assert ((vectors @ matrix + bias).argmax(axis=1) == labels).all()
    loose, _ = fit_softmax(vectors, labels, np.ones(4), 2, 100.0, 200)
    assert np.linalg.norm(loose) > np.linalg.norm(matrix)  # a weaker penalty lets the weights grow
    # the third example outweighs the other three: its label wins where it lies
    heavy, heavy_bias = fit_softmax(vectors[:3], np.array([0, 0, 1]), np.array([1.0, 1.0, 50.0]), 2, 1.0, 200)
    plain, plain_bias = fit_softmax(vectors[:3], np.array([0, 0, 1]), np.ones(3), 2, 1.0, 200)
    middle = np.array([0.5, 0.5])
    weighed, unweighed = middle @ heavy + heavy_bias, middle @ plain + plain_bias
    assert weighed[1] - weighed[0] > unweighed[1] - unweighed[0]


def test_the_words_add_each_things_cosine_to_its_logit_and_can_turn_a_guess() -> None:
    head = KindGuess("v", ("skirt", "top"), np.zeros((3, 2), np.float32), np.array([0.5, 0.0], np.float32), 0.9)
    words = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # a unit vector a thing
    photo = np.array([0.0, 0.6, 0.8], np.float32)  # nearer the words for a top
    worded = with_words(head, words, 2.0)
    assert worded.scores(photo[None])[0] == pytest.approx([0.5, 1.2])
    assert head.kinds(photo, ["Skirts", "Tops"]) == ["Skirts"] and worded.kinds(photo, ["Skirts", "Tops"]) == ["Tops"]


def test_the_kind_guess_learns_what_photos_of_people_show_and_serves_from_its_file(
    tmp_path: Path, tiny_env: dict[str, str]
) -> None:
    inshop, catalogue = _people_and_catalogue(tmp_path)
    out = tmp_path / "kinds.npz"
    result = run_stage_cli(
        tiny_env,
        *("train-kind-guess", "--inshop", str(inshop), "--catalogue", str(catalogue), "--variant", "effl0-minilm"),
        *("--bench-products", "9", "--out", str(out)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["things"] == ["skirt", "top", "tshirt"] and card["variant"] == "effl0-minilm"
    chosen = card["chosen"]
    best = f"weight {chosen['people_weight']:g}, C {chosen['c']:g}, words {chosen['word_weight']:g}"
    assert len(card["cross_validation"]) == 4 * 3 * 5 and chosen["people_weight"] in (2, 5, 10, 20)
    # the settings that did best without the half they guessed
    assert max(card["cross_validation"].values()) == card["cross_validation"][best]
    assert card["words"] == {"skirt": ["Skirts"], "top": ["Tops"], "tshirt": ["Tshirts"]}
    held = [photo for photo in people_photos(inshop) if photo.held_out]
    assert card["metrics"]["people_held_out"] == len(held) > 0
    # the made-up photos show no person: a search naming their garment embeds each whole, and so it is learnt and scored
    trained_photos = 24 - len(held)
    assert f"{trained_photos} photos of people" in card["trained_on"]["inshop"]
    assert f"and {trained_photos} views of the garment they wear" in card["trained_on"]["inshop"]
    assert card["metrics"]["garments_held_out"] == len(held)
    guess = KindGuess.load(out)
    assert guess.variant == "effl0-minilm"  # a searcher uses it for that variant only
    data = ("--inshop", str(inshop), "--catalogue", str(catalogue))
    unnamed = run_stage_cli(tiny_env, "train-kind-guess", *data, "--variant", "effl0-minilm")
    assert unnamed.returncode != 0 and "'effl0-minilm' names no kind_guess file: give --out" in unnamed.stderr
    model = load_model(Registry.load()["effl0-minilm"], "cpu", runtime="torch")
    vectors, _ = encode_paths(model.encode_images, [photo.path for photo in held], False, "held out")
    catalogue_kinds = ["Skirts", "Tshirts", "Tops", "Caps"]
    guessed = [guess.kinds(vector, catalogue_kinds) for vector in vectors]
    # the made-up skirts and tops differ by shape: photos of people it never saw are guessed right
    assert all(set(kinds) <= photo.kinds for kinds, photo in zip(guessed, held, strict=True))
    assert card["metrics"]["people_guessed_right_held_out"] == 1.0
    assert guess.kinds(vectors[0], ["Caps"]) == []  # a catalogue with none of its things: no guess
    # the trained photos in the cross-validation's two halves, each with a guess fitted without it at the card's
    # settings (what bench.people_folds searches with): every trained photo in one half, an item's views together,
    # and each half guessed right by the guess that never learnt it
    halves = fold_guesses(model, inshop, catalogue, out.with_suffix(".json"), KindGuessConfig(bench_products=9), False)
    trained = [photo for photo in people_photos(inshop) if not photo.held_out]
    assert sorted(photo.path for photos, _ in halves for photo in photos) == sorted(photo.path for photo in trained)
    assert not {photo.item for photo in halves[0][0]} & {photo.item for photo in halves[1][0]}
    for photos, half_guess in halves:
        assert photos and half_guess.things == guess.things and half_guess.variant == "effl0-minilm"
        assert not np.allclose(half_guess.weights, guess.weights, atol=1e-3)  # not the head fitted on both halves
        unseen, _ = encode_paths(model.encode_images, [photo.path for photo in photos], False, "the other half")
        assert all(set(half_guess.kinds(v, catalogue_kinds)) <= p.kinds for v, p in zip(unseen, photos, strict=True))


def test_the_shipped_kind_guess_puts_photos_of_people_among_their_kind() -> None:
    """The default's kind guess, on the In-shop items it never trained on, searched whole against apparel products it
    never trained on, through the API's search function with the garments found: their kind fills more of the top 10
    than the same search without the guess, a dress's full-length garment named finds dresses and a man's seldom
    does, and the catalogue's own photos (models wear most) still find themselves first."""
    name = "effl2-minilm-tuned"
    model = load_model(Registry.load()[name], "cpu")
    photos = [photo for photo in people_photos(shared_data("inshop_pairs")) if photo.held_out]
    rows = [r for r in read_catalogue_rows(shared_data("myntra") / "metadata.csv") if r["masterCategory"] == "Apparel"]
    items = catalogue_items(rows[:500])
    vectors, _ = encode_paths(model.encode_images, [Path(item.images[0]) for item in items], False, name)
    precision = {}
    with catalogue_searcher(model, items, vectors, PoseRegions()) as searcher:
        for guessing in (False, True):
            if not guessing:
                searcher.kind_guesses[name] = None
            else:
                searcher.kind_guesses.pop(name)  # loaded from the variant's file at its next photo of a person
            found = [searcher.search(SearchRequest.with_upload(top_k=10), name, p.path.read_bytes()) for p in photos]
            precision[guessing] = _kind_precision(photos, found)
        assert isinstance(searcher.kind_guesses[name], KindGuess)

        # the full-length garment named, after the whole photo as on the page: a dress finds the catalogue's 5 dresses
        # first, however like a top its crop looks; a man's outfit of separates is seldom taken for one piece
        def full_length(photo: PersonPhoto) -> bool | None:
            request = SearchRequest.with_upload(top_k=10, garment="full")
            try:
                found = searcher.search(request, name, photo.path.read_bytes())
            except InvalidInput:  # no full-length region on this photo
                return None
            return [hit.payload["category"] for hit in found.hits[:5]] == ["Dresses"] * 5

        dresses = [found for p in photos if p.folder == "Dresses" and (found := full_length(p)) is not None]
        men = [found for p in photos if "MEN" in p.path.parts and (found := full_length(p)) is not None]
        assert len(dresses) > 20 and sum(dresses) >= 0.85 * len(dresses), (sum(dresses), len(dresses))  # 30 of 32
        assert len(men) >= 10 and sum(men) < len(men) / 3, (sum(men), len(men))  # 2 of 13; all without ONE_PIECE
        photo_of = {item.id: Path(item.images[0]).read_bytes() for item in items}
        for item in items[::50]:
            own = searcher.search(SearchRequest.with_upload(top_k=1), name, photo_of[item.id])
            assert photo_of[own.hits[0].product_id] == photo_of[item.id]  # itself, or a listing of the very same photo
    assert precision[True] >= precision[False] + 0.05, precision  # 0.43 to 0.57 here; 2,500 products: bench
