"""Request ids: random, unique, and never shared with a forked worker."""

from __future__ import annotations

import os
import re

from moe_core.orchestrator import new_request_id


def test_ids_are_32_hex_digits_and_unique_across_many_refills():
    ids = [new_request_id() for _ in range(3000)]  # several read-ahead blocks
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_does_not_reuse_the_ids_its_parent_read_ahead():
    new_request_id()  # the parent has ids read ahead now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child != new_request_id()
