"""Clusters an update proposed are badged in the web app and accepted or rejected there, each
verdict saved as a new derived run (the API and the page in Chromium)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import imgcluster

from ..conftest import digit_labels
from .conftest import LiveServer, copy_workspace


@pytest.fixture(scope="module")
def grown(digits_dir: Path, digits_run: imgcluster.Run, tmp_path_factory: pytest.TempPathFactory):
    """Digits 0-7 clustered, then an update with the 8s and 9s that proposes new clusters."""
    root = tmp_path_factory.mktemp("proposals")
    folder, later = root / "images", root / "later"
    for path, label in digit_labels(digits_dir).items():
        dest = (later if label >= 8 else folder) / str(label)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / Path(path).name)
    workspace = copy_workspace(Path(digits_run.workspace), root / "ws")
    # Named (the class probabilities of the digits are mostly cached in the copied workspace), so the
    # proposals are named by the parent's namer too.
    imgcluster.cluster(folder, workspace=workspace, model="efficientnet-lite0", namer="imagenet", run_key="fit")
    shutil.copytree(later, folder, dirs_exist_ok=True)
    done = imgcluster.update(folder, workspace=workspace, run_key="grown")
    assert done.proposed, "the 8s and 9s should form at least one proposed cluster"
    return workspace, done


def test_proposals_are_named_by_the_parents_namer(grown) -> None:
    _, done = grown
    names = {p.cluster: done.run.names.get(p.cluster) for p in done.proposed}
    assert all(n is not None and n.source == "imagenet" and n.name for n in names.values()), names


@pytest.fixture(scope="module")
def live(grown) -> Iterator[LiveServer]:
    with LiveServer(grown[0]) as server:
        yield server


def test_the_api_lists_proposals_and_saves_each_verdict_as_a_new_run(live: LiveServer, grown) -> None:
    _, done = grown
    proposed = sorted(p.cluster for p in done.proposed)
    with httpx.Client(base_url=live.url, timeout=120) as client:
        response = client.get("/api/clusters", params={"run": "grown"})
        assert response.status_code == 200, response.text
        listed = response.json()["clusters"]
        assert sorted(c["cluster"] for c in listed if c["proposed"]) == proposed
        assert not any(c["proposed"] for c in client.get("/api/clusters", params={"run": "fit"}).json()["clusters"])

        assert client.post("/api/clusters/proposals", json={"run": "grown"}).status_code == 400
        not_proposed = next(c["cluster"] for c in listed if c["cluster"] >= 0 and not c["proposed"])
        refused = client.post("/api/clusters/proposals", json={"run": "grown", "accept": [not_proposed]})
        assert refused.status_code == 400 and "proposes no cluster" in refused.json()["detail"]

        answer = client.post("/api/clusters/proposals", json={"run": "grown", "accept": proposed[:1],
                                                          "reject": proposed[1:]})
        assert answer.status_code == 200, answer.text
        reviewed = answer.json()
        assert reviewed["parent"] == "grown" and reviewed["run"] != "grown"
        after = {c["cluster"]: c for c in client.get("/api/clusters", params={"run": reviewed["run"]}).json()["clusters"]}
    assert proposed[0] in after and not after[proposed[0]]["proposed"]
    assert not set(proposed[1:]) & set(after)  # rejected images went back to held
    assert imgcluster.load_run("grown", workspace=grown[0]).record.as_info()["update"]["proposed"]  # parent untouched


def test_a_proposal_is_badged_and_accepted_in_the_page(live: LiveServer, grown, browser, tmp_path: Path) -> None:
    _, done = grown
    cluster = done.proposed[0].cluster
    page = browser.new_page(viewport={"width": 1400, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live.url + "/#run=grown")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert page.locator("#clusters .badge.proposed").count() == len(done.proposed)
    page.click(f"#clusters li[data-cluster='{cluster}'] .name")
    page.wait_for_selector("#accept-proposal")
    page.screenshot(path=str(tmp_path / "proposal.png"))
    page.click("#accept-proposal")
    page.wait_for_function(f"document.querySelector('#status').textContent.includes('cluster {cluster} accepted')",
                           timeout=60_000)
    new_run = page.input_value("#run")
    assert new_run != "grown"
    assert page.locator(f"#clusters li[data-cluster='{cluster}'] .badge.proposed").count() == 0
    assert errors == []
    page.close()
    info = imgcluster.load_run(new_run, workspace=grown[0]).record.as_info()["update"]
    assert info["reviewed"]["accepted"] == [cluster]
