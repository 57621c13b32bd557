"""The connection board's rule (switch/adapters/terminal_server.py): which process leaves a connection to
another. Pure: the board over plain memory."""

from __future__ import annotations

import pytest

from switch.adapters.terminal_server import ConnectionBoard


def _board(*counts: int) -> ConnectionBoard:
    board = ConnectionBoard(bytearray(8 * len(counts)))
    for slot, count in enumerate(counts):
        board.post(slot, count)
    return board


def test_a_process_defers_only_to_one_that_holds_fewer():
    """If another accepting process holds fewer connections, then this one defers; on a tie it does not."""
    board = _board(3, 2, 3)
    assert board.others_have_fewer(0) and board.others_have_fewer(2)
    assert not board.others_have_fewer(1)
    assert not _board(4, 4).others_have_fewer(0)


def test_a_process_not_accepting_is_never_deferred_to():
    """If the only process with fewer connections is starting, draining or gone, then nobody defers to it."""
    board = _board(5, 0)
    board.stop_accepting(1)
    assert board.counts() == [5, ConnectionBoard.NOT_ACCEPTING]
    assert not board.others_have_fewer(0)
    board.post(1, 0)  # it accepts again (a new process in its slot)
    assert board.others_have_fewer(0)


def test_a_process_alone_never_defers():
    board = _board(100)
    assert board.processes == 1 and not board.others_have_fewer(0)


def test_counts_are_whole_64_bit_values():
    """If a count needs more than one byte, then it is read back whole (one slot is 8 bytes)."""
    board = _board(0, 0)
    board.post(1, 70_000)
    assert board.counts() == [0, 70_000] and board.others_have_fewer(1)


def test_a_board_needs_a_process():
    with pytest.raises(ValueError):
        ConnectionBoard.create(0)
