"""Property-based: on arbitrary JSON (and task-shaped JSON) the parser returns or raises ExportFormatError."""

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelmill.config import LabelsConfig
from modelmill.errors import ExportFormatError
from modelmill.labels.labelstudio import USED, read_export

CFG = LabelsConfig()
CLASSES = ("cat", "dog", "owl")
KNOWN = {"it0", "it1", "it2"}
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "cat", "dog", "zebra", "it0", "it1", "label", "choices"])
    | st.text(max_size=8)
)
any_json = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.sampled_from(["data", "id", "result"]), inner, max_size=4)
    ),
    max_leaves=25,
)
maybe = lambda strategy: strategy | any_json  # noqa: E731

choice_result = st.fixed_dictionaries(
    {
        "from_name": maybe(st.sampled_from(["label", "tag"])),
        "type": maybe(st.sampled_from(["choices", "rectanglelabels"])),
        "value": maybe(
            st.fixed_dictionaries(
                {"choices": maybe(st.lists(st.sampled_from(CLASSES + ("zebra",)), max_size=3))}
            )
        ),
    }
)
annotation = st.fixed_dictionaries(
    {"id": maybe(st.integers(0, 9))},
    optional={
        "completed_by": maybe(st.integers(0, 3) | st.fixed_dictionaries({"id": st.integers(0, 3)})),
        "result": maybe(st.lists(choice_result, max_size=2)),
        "was_cancelled": maybe(st.booleans()),
        "ground_truth": maybe(st.booleans()),
        "updated_at": maybe(st.text(max_size=5)),
        "reviews": maybe(st.lists(st.fixed_dictionaries({"accepted": maybe(st.booleans())}), max_size=2)),
    },
)
task = st.fixed_dictionaries(
    {"data": maybe(st.fixed_dictionaries({"item_id": maybe(st.sampled_from(sorted(KNOWN) + ["x"]))}))},
    optional={
        "id": any_json,
        "annotations": maybe(st.lists(annotation, max_size=3)),
        "predictions": any_json,
        "drafts": any_json,
    },
)


def _parse(payload: bytes, suffix: str = ".json"):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"export{suffix}"
        path.write_bytes(payload)
        refused = None
        try:
            parsed = read_export(path, CFG, CLASSES, KNOWN)
        except ExportFormatError as err:
            refused = str(err)
    if refused is not None:
        assert str(path) in refused
        return None
    frame = parsed.annotations
    used = frame[frame["status"] == USED]
    assert set(used["label"]) <= set(CLASSES) and set(used["item_id"]) <= KNOWN
    return parsed


@SETTINGS
@given(any_json)
def test_arbitrary_json_parses_or_raises_a_named_error(value):
    _parse(json.dumps(value).encode())


@SETTINGS
@given(st.lists(task, max_size=5))
def test_task_shaped_json_parses_or_raises_a_named_error(tasks):
    parsed = _parse(json.dumps(tasks).encode())
    if parsed is not None:
        assert parsed.tasks == len(tasks)


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_json_or_csv(payload):
    _parse(payload, ".json")
    _parse(payload, ".csv")


@SETTINGS
@given(st.lists(task, min_size=1, max_size=4), st.integers(1, 200))
def test_truncated_exports_are_refused(tasks, cut):
    text = json.dumps(tasks).encode()
    cut = min(cut, len(text) - 1)
    assert _parse(text[:cut]) is None


@SETTINGS
@given(st.lists(any_json, max_size=6), st.integers(1, 40), st.sampled_from(["", " ", "\n  "]))
def test_stream_reader_matches_json_loads_across_chunk_boundaries(values, chunk, space):
    import io

    from modelmill.labels import jsonstream

    text = json.dumps(values, separators=("," + space, ":")).replace("[", "[" + space, 1)
    original = jsonstream.CHUNK_CHARS
    jsonstream.CHUNK_CHARS = chunk
    try:
        assert list(jsonstream.JSONListStream(io.StringIO(text))) == json.loads(text)
        for cut in {1, len(text) // 2, len(text) - 1} - {0, len(text)}:
            try:
                list(jsonstream.JSONListStream(io.StringIO(text[:cut])))
            except jsonstream.JSONStreamError:
                continue
            raise AssertionError(f"truncated text accepted: {text[:cut]!r}")
    finally:
        jsonstream.CHUNK_CHARS = original


@SETTINGS
@given(st.text(max_size=60), st.integers(1, 16))
def test_stream_reader_agrees_with_json_on_arbitrary_text(text, chunk):
    import io

    from modelmill.labels import jsonstream

    try:
        expected = json.loads(text)
    except ValueError:
        expected = ValueError
    original = jsonstream.CHUNK_CHARS
    jsonstream.CHUNK_CHARS = chunk
    try:
        got = list(jsonstream.JSONListStream(io.StringIO(text)))
    except jsonstream.JSONStreamError:
        got = ValueError
    finally:
        jsonstream.CHUNK_CHARS = original
    if isinstance(expected, list) or got is not ValueError:
        assert got == expected
