"""The console's one-time sign-in links: a code works once, expires, is stored only as its
digest in a private folder, and of two concurrent redeemers exactly one wins."""
from __future__ import annotations

import stat
import threading

from trainserve.console import links


def test_a_code_works_once(tmp_path):
    code = links.mint(tmp_path)
    assert links.redeem(tmp_path, code)
    assert not links.redeem(tmp_path, code)


def test_a_code_expires(tmp_path):
    code = links.mint(tmp_path, ttl_s=60, now=1000.0)
    assert not links.redeem(tmp_path, code, now=1061.0)
    assert not links.redeem(tmp_path, links.mint(tmp_path, ttl_s=60, now=1000.0), now=1060.0)
    assert links.redeem(tmp_path, links.mint(tmp_path, ttl_s=60, now=1000.0), now=1059.0)


def test_only_digests_are_stored_in_a_private_folder(tmp_path):
    code = links.mint(tmp_path)
    folder = links.codes_dir(tmp_path)
    assert folder == tmp_path / "run" / "console-signin"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    [stored] = list(folder.iterdir())
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert code not in stored.name and code not in stored.read_text()


def test_expired_codes_are_removed_when_another_is_made(tmp_path):
    links.mint(tmp_path, ttl_s=1, now=1000.0)
    links.mint(tmp_path, ttl_s=600, now=2000.0)
    assert len(list(links.codes_dir(tmp_path).iterdir())) == 1


def test_malformed_codes_are_refused_without_touching_files(tmp_path):
    links.mint(tmp_path)
    for code in ("", "short", "../../admin-token", "a" * 200, "x/" * 20):
        assert not links.redeem(tmp_path, code)
    assert len(list(links.codes_dir(tmp_path).iterdir())) == 1


def test_of_concurrent_redeemers_exactly_one_wins(tmp_path):
    code = links.mint(tmp_path)
    results, start = [], threading.Barrier(8)

    def redeem():
        start.wait()
        results.append(links.redeem(tmp_path, code))
    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_new_signin_url(tmp_path):
    url = links.new_signin_url("http://127.0.0.1:8270", tmp_path)
    prefix = "http://127.0.0.1:8270/signin/"
    assert url.startswith(prefix) and links.redeem(tmp_path, url[len(prefix):])
