import os
import uuid

import numpy as np
import pytest

from agentops.devmodel.server import embed_text
from agentops.testing.processes import free_port, python_run
from memory.embedders import OpenAIEmbedder, WordLlamaEmbedder, get_embedder
from memory.services import memory_recall, memory_remember
from tracing.platform.failures import Failure, FailureClass


def test_it_loads_wordllama_from_a_cache_folder_without_downloading(tmp_path):
    embedder = WordLlamaEmbedder(tmp_path / "wordllama")
    assert (tmp_path / "wordllama" / "tokenizers" / "l2_supercat_tokenizer_config.json").exists()
    texts = ["The customer likes green tea.", "Shipping takes three days.", "Green tea, please."]
    batch = embedder.embed(texts)
    assert batch.shape == (3, 256) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert np.allclose(batch[1], embedder.embed([texts[1]])[0], atol=1e-5)
    assert batch[0] @ batch[2] > batch[0] @ batch[1]
    assert embedder.embed([]).shape == (0, 256)


def test_it_embeds_in_batches_over_http_with_the_openai_client(devmodel):
    embedder = OpenAIEmbedder(base_url=devmodel.url, api_key="sk-test-key", model="embed-test")
    texts = [f"memory number {i} about topic {i % 7}" for i in range(300)]  # two batches
    vectors = embedder.embed(texts)
    assert vectors.shape == (300, 256) and embedder.name == "openai/embed-test"
    for i in (0, 255, 256, 299):
        assert np.allclose(vectors[i], embed_text(texts[i], 256), atol=1e-6)


def test_it_classifies_an_endpoint_it_cannot_reach():
    secret = "sk-" + uuid.uuid4().hex
    embedder = OpenAIEmbedder(
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key=secret,
        model="m",
        max_retries=0,
        timeout=5,
    )
    with pytest.raises(Failure) as caught:
        embedder.embed(["hello"])
    assert caught.value.failure_class == FailureClass.CONNECTION
    assert secret not in str(caught.value)


def test_it_classifies_an_error_answer(devmodel):
    embedder = OpenAIEmbedder(
        base_url=devmodel.url + "/nowhere", api_key="k", model="m", max_retries=0
    )
    with pytest.raises(Failure) as caught:
        embedder.embed(["hello"])
    assert caught.value.failure_class == FailureClass.INVALID_REQUEST
    assert caught.value.status_code == 404 and "404" in str(caught.value)


def test_it_remembers_and_recalls_with_the_openai_embedder_chosen_by_setting(
    agent, settings, devmodel
):
    settings.MEMORY_EMBEDDER = "openai"
    settings.MEMORY_EMBEDDING_BASE_URL = devmodel.url
    settings.MEMORY_EMBEDDING_MODEL = "embed-test"
    embedder = get_embedder()
    assert isinstance(embedder, OpenAIEmbedder) and embedder.name == "openai/embed-test"
    memory = memory_remember(
        agent_id=agent.pk, user_key="u", text="The customer owns a red bicycle"
    )
    memory_remember(agent_id=agent.pk, user_key="u", text="Invoices go out by email")
    assert memory.embedder == "openai/embed-test"
    assert np.allclose(
        memory.embedding, embed_text("The customer owns a red bicycle", 256), atol=1e-6
    )
    got = memory_recall(agent_id=agent.pk, user_key="u", query="red bicycle", k=1)
    assert [r.id for r in got] == [memory.pk]

    settings.MEMORY_EMBEDDER = (
        "wordllama"  # other vectors: the old ones are invisible until re-embedded
    )
    assert memory_recall(agent_id=agent.pk, user_key="u", query="red bicycle", k=1) == []


def test_it_refuses_an_unknown_embedder_setting_in_one_sentence():
    env = {**os.environ, "MEMORY_EMBEDDER": "word2vec"}
    result = python_run(["manage.py", "check"], env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "MEMORY_EMBEDDER" in lines[0]
