"""The persistent code vector against a plain list, and its persistence."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certflow.core._vector import CHUNK, MID, CodeVector

codes = st.integers(min_value=0, max_value=2**32 - 1)
# Sizes around the chunk and mid-node boundaries, where off-by-one errors live.
sizes = st.sampled_from(
    [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK * MID - 1, CHUNK * MID, CHUNK * MID + 3]
) | st.integers(0, 3000)


@given(size=sizes, data=st.data())
def test_set_returns_a_new_vector_and_leaves_the_old_one_intact(
    size: int, data: st.DataObject
) -> None:
    model = [(i * 2654435761) % 2**32 for i in range(size)]  # varied, and of any size
    vector = CodeVector.from_iterable(model)
    versions = [(vector, list(model))]
    for _ in range(data.draw(st.integers(0, 20))):
        if not model:
            break
        index = data.draw(st.integers(0, len(model) - 1))
        code = data.draw(codes)
        vector = vector.set(index, code)
        model[index] = code
        versions.append((vector, list(model)))
    for version, expected in versions:
        assert list(version) == expected
        assert len(version) == len(expected)
        if expected:
            assert version[len(expected) - 1] == expected[-1]


@given(size=sizes, data=st.data())
def test_a_transient_applies_many_updates_and_appends_without_touching_the_source(
    size: int, data: st.DataObject
) -> None:
    source = CodeVector.filled(size, 5)
    draft = source.transient()
    model = [5] * size
    for _ in range(data.draw(st.integers(0, 50))):
        if len(model) > 0 and data.draw(st.booleans()):
            index = data.draw(st.integers(0, len(model) - 1))
            draft[index] = model[index] = data.draw(codes)
        else:
            code = data.draw(codes)
            draft.append(code)
            model.append(code)
    frozen = draft.freeze()
    assert list(frozen) == model
    assert list(source) == [5] * size
    if model:
        draft[0] = 99  # the draft may go on after freezing without changing the frozen vector
        assert frozen[0] == model[0]


@given(size=sizes)
def test_append_one_by_one_equals_building_at_once(size: int) -> None:
    vector = CodeVector.from_iterable([])
    for i in range(size):
        vector = vector.append(i)
    assert vector == CodeVector.from_iterable(range(size))


def test_map_chunks_shares_the_chunks_it_keeps_and_reports_their_first_index() -> None:
    vector = CodeVector.from_iterable(range(3 * CHUNK))
    starts: list[int] = []

    def convert(chunk: array[int], first: int) -> array[int]:
        starts.append(first)
        return chunk if first else array("I", [0] * len(chunk))

    mapped = vector.map_chunks(convert)
    assert starts == [0, CHUNK, 2 * CHUNK]
    assert list(mapped) == [0] * CHUNK + list(range(CHUNK, 3 * CHUNK))
    assert list(mapped.chunks())[1] is list(vector.chunks())[1]


def test_out_of_range_indexes_raise_index_error() -> None:
    vector = CodeVector.filled(3, 0)
    with pytest.raises(IndexError):
        vector[3]
    with pytest.raises(IndexError):
        vector.set(-1, 0)


def test_set_refuses_an_index_outside_the_vector() -> None:
    vector = CodeVector.from_iterable([1, 2, 3])
    assert vector.set(2, 9)[2] == 9
    for bad in (3, -1):
        with pytest.raises(IndexError) as error:
            vector.set(bad, 0)
        assert error.value.args == (bad,)


def test_a_transient_appends_across_chunk_and_mid_node_boundaries() -> None:
    size = CHUNK * MID + 3  # one full mid node, then a new one
    draft = CodeVector.from_iterable([]).transient()
    for code in range(size):
        draft.append(code % 7)
    vector = draft.freeze()
    assert len(vector) == size
    assert list(vector) == [code % 7 for code in range(size)]
    assert [len(chunk) for chunk in vector.chunks()][-2:] == [CHUNK, 3]
    extended = vector.append(5)
    assert (len(extended), extended[size], len(vector)) == (size + 1, 5, size)


def test_vectors_are_equal_by_content_and_length() -> None:
    a = CodeVector.from_iterable([1, 2, 3] * 200)
    assert a == CodeVector.from_iterable([1, 2, 3] * 200)
    assert a != CodeVector.from_iterable([1, 2, 3] * 200 + [0])
    assert a != a.set(599, 9)
    assert a != CodeVector.from_iterable([1, 2, 3] * 199)
    assert (a == "not a vector") is False


def test_a_draft_that_grows_a_mid_node_still_copies_the_one_before_it_writes_there() -> None:
    full = CHUNK * MID  # one whole mid node of codes
    vector = CodeVector.filled(full, 1)
    draft = vector.transient()
    draft.append(2)  # starts a second mid node
    draft[0] = 3  # a write below the first, which the vector shares
    grown = draft.freeze()
    assert (grown[0], grown[full], len(grown)) == (3, 2, full + 1)
    assert vector[0] == 1
    assert list(vector) == [1] * full


def test_reading_refuses_an_index_outside_the_vector() -> None:
    vector = CodeVector.from_iterable([1, 2, 3])
    for bad in (3, 4, -1):
        with pytest.raises(IndexError) as error:
            vector[bad]
        assert error.value.args == (bad,)


def test_filled_holds_codes_up_to_the_32_bit_maximum() -> None:
    top = 2**32 - 1  # above the signed 32-bit range
    assert list(CodeVector.filled(3, top)) == [top] * 3


def test_map_chunks_reports_first_indexes_past_the_first_mid_node() -> None:
    vector = CodeVector.filled(CHUNK * MID + 1, 0)
    starts: list[int] = []

    def convert(chunk: array[int], first: int) -> array[int]:
        starts.append(first)
        return chunk

    vector.map_chunks(convert)
    assert starts == [CHUNK * i for i in range(MID + 1)]
