import io

from django.core.management import call_command

from memory.embedders import get_embedder
from memory.models import Memory
from memory.services import memory_create, memory_recall, memory_remember
from tests.kit import until


def test_it_embeds_a_memory_a_person_wrote_in_the_worker(transactional_db, worker, agent, bob):
    memory = memory_create(
        agent_id=agent.pk, user_key="ana", text="Ana's parcel goes to the back door.", actor=bob
    )  # commits, and queues the embedding job on "maintenance"
    assert memory.embedding is None
    until(lambda: Memory.objects.filter(pk=memory.pk).exclude(embedder="").exists(), seconds=60)
    memory.refresh_from_db()
    assert memory.embedder == get_embedder().name, worker.output()[-2000:]
    got = memory_recall(agent_id=agent.pk, user_key="ana", query="where does the parcel go", k=3)
    assert [r.id for r in got] == [memory.pk]


def test_it_reembeds_memories_after_the_embedder_changed(agent):
    memories = [
        memory_remember(agent_id=agent.pk, user_key="", text=f"Fact number {i} about tea.")
        for i in range(5)
    ]
    Memory.objects.filter(pk__in=[m.pk for m in memories[:3]]).update(embedder="openai/old-model")
    Memory.objects.filter(pk=memories[3].pk).update(embedding=None)
    out, err = io.StringIO(), io.StringIO()
    call_command("reembed_memories", "--batch-size", "2", stdout=out, stderr=err)
    assert "Embedded 4 of 4 memories" in out.getvalue()
    assert "Embedding with wordllama" in err.getvalue() and "4/4" in err.getvalue()
    assert set(Memory.objects.values_list("embedder", flat=True)) == {get_embedder().name}
    assert not Memory.objects.filter(embedding__isnull=True).exists()

    out = io.StringIO()
    call_command("reembed_memories", stdout=out, stderr=io.StringIO())
    assert "Every memory is embedded" in out.getvalue()
    out = io.StringIO()
    call_command("reembed_memories", "--all", "--no-progress", stdout=out, stderr=io.StringIO())
    assert "Embedded 5 of 5" in out.getvalue()
