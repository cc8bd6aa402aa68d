"""Summarizer backends: programmatic (experience), OpenAI-compatible HTTP (against a real loopback server) and a
local transformers model (the tiny offline one)."""

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from skill_sd_trl.envs.sokoban.summary import EVENTS as SOKOBAN_EVENTS
from skill_sd_trl.envs.sokoban.summary import SUMMARY_PROMPT as SOKOBAN_PROMPT
from skill_sd_trl.skills.schema import SkillParseError, parse_skill
from skill_sd_trl.skills.llm_summarizers import OpenAIChatSummarizer, TransformersSummarizer
from skill_sd_trl.skills.summarizers import ExperienceSummarizer, SummarizerError, build_summarizer
from skill_sd_trl.skills.trajectory import Trajectory, Turn

# ---------------------------------------------------------------------------------------------------------------
# hand-made trajectories
# ---------------------------------------------------------------------------------------------------------------


def move(actions, events=(), valid=True, raw=None):
    return Turn(action=raw or f"<answer>{' || '.join(actions)}</answer>", observation="board", valid=valid,
                info={"actions": list(actions), "events": list(events)})


def soko(turns, success, reward, completion=0.0, stop="solved", task_id="lvl-1", step=1):
    return Trajectory(task_id=task_id, env_name="sokoban", task="Solve the level.", turns=turns, reward=reward,
                      success=success, completion=1.0 if success else completion, stop_reason=stop, step=step)


def sokoban_summarizer():
    """What the app layer builds for Sokoban: the experience summarizer with the environment's event vocabulary."""
    return ExperienceSummarizer(events={"sokoban": SOKOBAN_EVENTS})


def win6():
    return soko([move(["Up", "Up"]), move(["Left"], ["box_on_target"]), move(["Down", "Down", "Right"],
                 ["box_on_target", "solved"])], True, 11.5, step=1)


def win4():
    return soko([move(["Left", "Left"], ["box_on_target"]), move(["Up", "Right"], ["box_on_target", "solved"])],
                True, 11.7, step=2)


def loser():
    return soko(
        [
            move([], ["invalid_action"], valid=False, raw="I think the box should go up"),
            move(["Right"], ["box_on_target"]),
            move(["Left", "Left"], ["box_off_target", "box_in_dead_corner"]),
            move(["Up"], ["wall_bump"]),
        ],
        False, -3.2, completion=0.5, stop="max_steps",
    )


def test_experience_summarizer_reads_events_only_through_the_environment_vocabulary():
    from skill_sd_trl.skills.events import EventVocabulary

    generic = parse_skill(ExperienceSummarizer().summarize([loser()])).mistake_analysis
    assert "dead corner" not in generic  # skills/ knows no Sokoban event by itself
    assert "Other events in unsolved episodes:" in generic and "box_in_dead_corner" in generic
    assert "Invalid or unparseable actions: 1 turn(s)" in generic  # understood in every environment
    custom = EventVocabulary(progress=frozenset({"box_on_target"}),
                             mistakes={"wall_bump": ("Bumped a wall", "Look first.")})
    m = parse_skill(ExperienceSummarizer(events={"sokoban": custom}).summarize([loser()])).mistake_analysis
    assert "Bumped a wall: 1 time(s) in 1 of 1 episode(s), first at turn 4 after 'Up'. Look first." in m
    assert "dead corner" not in m
    # a vocabulary applies to its own environment (and names starting with it), not to others
    other = dataclasses.replace(loser(), env_name="chess")
    assert "Bumped a wall" not in parse_skill(
        ExperienceSummarizer(events={"sokoban": custom}).summarize([other])).mistake_analysis


def test_experience_golden_workflow_is_shortest_success_across_calls():
    summ = sokoban_summarizer()
    first = parse_skill(summ.summarize([win6(), loser()]))
    # Sokoban's vocabulary writes the solution as the answer that plays it (what its teacher model can act on)
    assert first.golden_workflow == (
        "Shortest solution seen so far (6 actions, reward 11.50, from step 1):\n"
        "<answer>Up || Up || Left || Down || Down || Right</answer>"
    )
    second = parse_skill(summ.summarize([win4()]))
    assert second.golden_workflow == (
        "Shortest solution seen so far (4 actions, reward 11.70, from step 2):\n<answer>Left || Left || Up || Right</answer>"
    )
    # without an answer syntax (an environment that declares none) the steps are numbered, repeats folded
    generic = parse_skill(ExperienceSummarizer().summarize([win6()]))
    assert generic.golden_workflow == (
        "Shortest solution seen so far (6 actions, reward 11.50, from step 1):\n"
        "1. Up x2\n2. Left\n3. Down x2\n4. Right"
    )
    third = parse_skill(summ.summarize([win6(), loser()]))  # a longer win does not replace the remembered one
    assert third.golden_workflow == second.golden_workflow
    assert "An earlier episode" not in third.success_analysis
    only_losses = parse_skill(summ.summarize([loser()]))
    assert only_losses.golden_workflow == second.golden_workflow
    assert "An earlier episode did solve it in 4 actions" in only_losses.success_analysis
    mem = summ.memory("lvl-1")
    assert (mem.episodes, mem.successes) == (6, 3)


def test_experience_mistakes_from_events_and_validity():
    skill = parse_skill(sokoban_summarizer().summarize([win6(), loser()]))
    m = skill.mistake_analysis
    assert "Invalid or unparseable actions: 1 turn(s) in 1 of 2 episode(s) (e.g. 'I think the box should go up')" in m
    assert "dead corner" in m and "1 time(s) in 1 of 2 episode(s), first at turn 3 after 'Left'" in m
    assert "pushed off a target: 1 time(s)" in m and "walked into a wall: 1 time(s)" in m
    assert "Unsolved episodes (1 of 2) ended by: max_steps." in m
    assert "box_on_target" not in m  # progress is not a mistake
    s = skill.success_analysis
    assert s.startswith("1 of 2 episode(s) solved the task, with 6 actions (mean 6.0) in 3 turns.")
    assert "The shortest winner played: Up x2, Left, Down x2, Right." in s
    assert "Most used actions: Up x2, Down x2, Left, Right." in s
    assert "Progress along the way: box_on_target x2, solved." in s
    # Most harmful mistake first.
    assert m.index("dead corner") < m.index("pushed off a target") < m.index("walked into a wall")
    two = parse_skill(sokoban_summarizer().summarize([win6(), win4()])).success_analysis
    assert two.startswith("2 of 2 episode(s) solved the task, with 4-6 actions (mean 5.0) in 2-3 turns.")


def test_experience_without_success_uses_best_attempt_prefix():
    summ = sokoban_summarizer()
    weak = soko([move(["Down"]), move(["Up"], ["wall_bump"])], False, -0.2, completion=0.0, stop="max_steps")
    skill = parse_skill(summ.summarize([weak, loser()]))
    # loser() has the higher completion; its actions up to the last progress event (turn 2: box_on_target).
    assert skill.golden_workflow == (
        "No episode has solved this task yet (2 seen). Best attempt so far (completion 50%, reward -3.20), up to "
        "its last progress:\n1. Right\nThen continue from there and avoid the mistakes listed."
    )
    assert skill.success_analysis == (
        "None of the 2 episode(s) here solved the task. The best reached completion 50% with reward -3.20 "
        "(box_on_target)."
    )


def test_experience_generic_actions_and_api_errors():
    def cell(code, events=()):
        return Turn(action=code, observation="out", info={"events": list(events)})  # no "actions": raw text used

    fail = Trajectory("app-1", "appworld", "Like all songs.", [
        cell("print(apis.spotify.login())", ["api_error: Unknown API 'login'"]),
        cell("print(apis.spotify.login())", ["api_error: Unknown API 'login'"]),
        cell("x = 1/0", ["api_error: ZeroDivisionError"]),
    ], reward=0.0, stop_reason="max_turns")
    ok = Trajectory("app-1", "appworld", "Like all songs.", [
        cell("token = apis.spotify.sign_in(user='a')"),
        cell("apis.supervisor.complete_task()", ["subtask_done"]),
    ], reward=1.0, success=True)
    skill = parse_skill(sokoban_summarizer().summarize([fail, ok]))
    assert "API errors (3): Unknown API 'login' x2, ZeroDivisionError." in skill.mistake_analysis
    assert skill.golden_workflow.endswith(
        "1. token = apis.spotify.sign_in(user='a')\n2. apis.supervisor.complete_task()"
    )


def test_experience_no_mistakes_and_field_caps():
    skill = parse_skill(sokoban_summarizer().summarize([win4()]))
    assert skill.mistake_analysis == (
        "No invalid actions or harmful events in the 1 episode(s) shown; keep the same discipline."
    )
    huge = Trajectory("big", "appworld", "t", [Turn(action=f"step_{i}() # " + "x" * 500) for i in range(400)],
                      reward=1.0, success=True)
    skill = parse_skill(sokoban_summarizer().summarize([huge]))  # must still fit the schema's caps
    assert "more steps)" in skill.golden_workflow and len(skill.golden_workflow) <= 4000


def test_experience_state_round_trip_and_input_checks():
    summ = sokoban_summarizer()
    summ.summarize([win4()])
    restored = sokoban_summarizer()
    restored.load_state_dict(json.loads(json.dumps(summ.state_dict())))
    assert restored.summarize([loser()]) == summ.summarize([loser()])
    with pytest.raises(ValueError, match="takes the trajectories of one task"):
        summ.summarize([win4(), soko([], False, 0.0, task_id="other")])
    with pytest.raises(ValueError, match="needs at least one trajectory"):
        summ.summarize([])
    assert isinstance(build_summarizer("experience"), ExperienceSummarizer)
    with pytest.raises(ValueError, match="unknown summarizer 'gpt'"):
        build_summarizer("gpt")


def test_experience_focus_describes_that_trajectory_with_the_group_as_contrast():
    summ = sokoban_summarizer()
    w6, lose, w4 = group = [win6(), loser(), win4()]
    skills = [parse_skill(summ.summarize(group, focus=f)) for f in group]
    assert len({s.normalized_key() for s in skills}) == 3  # three trajectories, three different skills
    s6, s_lose, s4 = skills
    assert s6.success_analysis.startswith(
        "This episode solved the task with 6 actions in 3 turns (reward 11.50). It played: Up x2, Left, Down x2, "
        "Right. Progress along the way: box_on_target x2, solved. Every turn was a valid action."
    )
    assert "For contrast, 1 of the 2 other episode(s) solved it, with 4 actions. A shorter solution exists" in (
        s6.success_analysis)
    assert s4.success_analysis.startswith("This episode solved the task with 4 actions in 2 turns (reward 11.70).")
    assert "A shorter solution exists" not in s4.success_analysis
    assert s_lose.success_analysis.startswith(
        "This episode did not solve the task: it reached completion 50% with reward -3.20 in 4 turns "
        "(box_on_target). It played: Right, Left x2, Up. For contrast, 2 of the 2 other episode(s) solved it"
    )
    # mistakes: the focus's own, worded as this episode's; the winners' clean runs are not averaged in
    assert s6.mistake_analysis == s4.mistake_analysis == (
        "No invalid actions or harmful events in this episode; keep the same discipline."
    )
    m = s_lose.mistake_analysis
    assert "Invalid or unparseable actions: 1 turn(s) (e.g. 'I think the box should go up')." in m
    assert "dead corner" in m and "1 time(s), first at turn 3 after 'Left'" in m
    assert "This episode ended without solving the task: max_steps." in m and "episode(s)" not in m
    # golden workflow: the shortest success of the task, a contrast winner's included, even for the first focus
    workflow = ("Shortest solution seen so far (4 actions, reward 11.70, from step 2):\n"
                "<answer>Left || Left || Up || Right</answer>")
    assert s6.golden_workflow == s_lose.golden_workflow == s4.golden_workflow == workflow
    mem = summ.memory("lvl-1")
    assert (mem.episodes, mem.successes) == (3, 2)  # each trajectory counted once, not once per call


def test_experience_focus_edge_cases():
    summ = sokoban_summarizer()
    summ.summarize([win4()], focus=win4())  # a focus outside the list counts once; the list is contrast
    assert summ.memory("lvl-1").episodes == 1
    alone = parse_skill(summ.summarize([], focus=loser()))
    assert alone.success_analysis.endswith(
        "It played: Right, Left x2, Up. An earlier episode did solve it in 4 actions: follow the golden workflow."
    )
    w = win6()
    twin = parse_skill(sokoban_summarizer().summarize([w, win6()], focus=w)).success_analysis
    assert "For contrast, 1 of the 1 other episode(s) solved it, with 6 actions." in twin  # an equal twin is contrast
    only_losses = parse_skill(sokoban_summarizer().summarize([loser(), loser()], focus=loser())).success_analysis
    assert "For contrast, none of the 2 other episode(s) solved it (best completion 50%)." in only_losses
    with pytest.raises(ValueError, match="takes the trajectories of one task"):
        summ.summarize([win4()], focus=soko([], False, 0.0, task_id="other"))


# ---------------------------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint against a real loopback HTTP server
# ---------------------------------------------------------------------------------------------------------------

SKILL = {"success_analysis": "pushed left first", "mistake_analysis": "corner", "golden_workflow": "L, U"}


def completion_body(content):
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
            "content": content}, "finish_reason": "stop"}]}


class ScriptedServer:
    """Serves scripted answers in order: (status, body, headers, delay_seconds); records every request."""

    def __init__(self):
        self.script = []
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": json.loads(self.rfile.read(length))})
                status, body, headers, delay = server.script.pop(0) if server.script else (500, b"no script", {}, 0)
                time.sleep(delay)
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def add(self, status=200, body=None, headers=None, delay=0.0):
        body = body if body is not None else completion_body(json.dumps(SKILL))
        self.script.append((status, body, headers or {}, delay))


@pytest.fixture
def server():
    srv = ScriptedServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def client_factory(server, monkeypatch):
    monkeypatch.setenv("TEST_SKILL_KEY", "sk-test-123")
    made = []

    def make(**kw):
        kw.setdefault("api_key_env", "TEST_SKILL_KEY")
        kw.setdefault("timeout", 2.0)
        kw.setdefault("env_prompts", {"sokoban": SOKOBAN_PROMPT})  # as the app layer passes EnvSpec.summary_prompt
        client = OpenAIChatSummarizer(server.base_url, "qwen-test", **kw)
        made.append(client)
        return client

    return make


def test_http_success_request_shape_and_auth(server, client_factory):
    server.add(body=completion_body("```json\n" + json.dumps(SKILL) + "\n```"))
    client = client_factory(extra_body={"top_p": 1.0})
    text = client.summarize([win6(), loser()])
    assert parse_skill(text).content() == SKILL
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers["authorization"] == "Bearer sk-test-123"
    assert headers["content-type"] == "application/json"
    body = req["body"]
    assert body["model"] == "qwen-test" and body["temperature"] == 0.0 and body["top_p"] == 1.0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "Sokoban level (id lvl-1)" in body["messages"][1]["content"]
    assert client.name == "openai:qwen-test"


def test_http_focus_prompt_describes_the_focus_episode(server, client_factory):
    server.add()
    client = client_factory(max_prompt_chars=6000, max_trajectories=2)
    w6, lose, w4 = win6(), loser(), win4()
    assert parse_skill(client.summarize([w6, lose, w4], focus=lose)).content() == SKILL
    messages = server.requests[0]["body"]["messages"]
    assert "When one episode is marked as the episode to summarize, the skill is about that episode" in (
        messages[0]["content"])
    user = messages[1]["content"]
    assert "Below is the episode to summarize (NOT SOLVED, reward -3.200), followed by 1 other episode(s) of the " \
           "same task for contrast (1 of them solved it)." in user
    focus_at = user.index("=== EPISODE TO SUMMARIZE")
    contrast_at = user.index("=== Contrast episode 1 of 1")
    assert focus_at < user.index("I think the box should go up") < contrast_at  # the loser's own turn, in its block
    assert user.count("=== Contrast episode") == 1  # max_trajectories=2: the focus and one contrast
    assert "reward -3.200" in user[focus_at:contrast_at] and "reward -3.200" not in user[contrast_at:]


def test_http_asks_for_the_skill_schema_and_falls_back_once_when_the_server_refuses_it(server, client_factory):
    server.add(status=400, body={"error": {"message": "response_format json_schema is not supported"}})
    server.add()
    server.add()
    client = client_factory()
    assert parse_skill(client.summarize([win4()])).content() == SKILL
    assert parse_skill(client.summarize([win6()])).content() == SKILL
    first, retried, later = (r["body"] for r in server.requests)
    schema = first["response_format"]["json_schema"]
    assert first["response_format"]["type"] == "json_schema" and schema["strict"] is True
    assert schema["schema"]["required"] == ["success_analysis", "mistake_analysis", "golden_workflow"]
    assert "response_format" not in retried and "response_format" not in later  # asked once, remembered


def test_http_timeout_then_no_retry_left(server, client_factory):
    server.add(delay=1.5)
    client = client_factory(timeout=0.3, max_retries=0)
    start = time.monotonic()
    with pytest.raises(SummarizerError, match=r"timeout after 0.3s") as info:
        client.summarize([win4()])
    assert time.monotonic() - start < 1.2
    assert info.value.retryable


def test_http_timeout_then_success_on_retry(server, client_factory):
    server.add(delay=1.5)
    server.add()
    client = client_factory(timeout=0.3, max_retries=2)
    assert parse_skill(client.summarize([win4()])).content() == SKILL
    assert len(server.requests) == 2  # the SDK's retry: the only retry layer


def test_http_500_then_success_and_429_retry_after(server, client_factory):
    server.add(status=500, body=b"internal error")
    server.add(status=429, body={"error": "slow down"}, headers={"Retry-After": "1"})
    server.add()
    client = client_factory(max_retries=3)
    start = time.monotonic()
    assert parse_skill(client.summarize([win4()])).content() == SKILL
    assert len(server.requests) == 3
    assert time.monotonic() - start >= 1.0  # Retry-After honoured


def test_http_persistent_500_gives_up(server, client_factory):
    for _ in range(3):
        server.add(status=503, body=b"down")
    client = client_factory(max_retries=2)
    with pytest.raises(SummarizerError, match=r"HTTP 503 .*down") as info:
        client.summarize([win4()])
    assert info.value.retryable and len(server.requests) == 3


@pytest.mark.parametrize(
    "status,body,message",
    [
        (200, b"<html>gateway oops</html>", "expected choices[0].message.content, got <html>gateway oops</html>"),
        (200, {"choices": []}, "unexpected response shape"),
        (200, {"result": "hi"}, "expected choices[0].message.content"),
        (200, completion_body(None), "choices[0].message.content is NoneType, expected a string"),
        (401, {"error": "bad key"}, "HTTP 401"),
        (404, b"not found", "HTTP 404"),
    ],
)
def test_http_bad_answers_not_retried(server, client_factory, status, body, message):
    server.add(status=status, body=body)
    server.add()  # would succeed if (wrongly) retried
    client = client_factory(max_retries=3)
    with pytest.raises(SummarizerError) as info:
        client.summarize([win4()])
    assert message in str(info.value)
    assert not info.value.retryable and len(server.requests) == 1


def test_http_garbage_skill_text_is_a_parse_failure(server, client_factory):
    server.add(body=completion_body("I am sorry, I cannot help with that."))
    text = client_factory().summarize([win4()])
    with pytest.raises(SkillParseError, match="no JSON object found"):
        parse_skill(text)


def test_http_connection_refused_and_config_errors(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIChatSummarizer(f"http://127.0.0.1:{port}/v1", "m", api_key_env=None, max_retries=0)
    with pytest.raises(SummarizerError, match=r"cannot reach ") as info:
        client.summarize([win4()])
    assert info.value.retryable
    monkeypatch.delenv("MISSING_KEY_VAR", raising=False)
    with pytest.raises(ValueError, match="environment variable MISSING_KEY_VAR is not set"):
        OpenAIChatSummarizer("http://x/v1", "m", api_key_env="MISSING_KEY_VAR")
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        OpenAIChatSummarizer("localhost:8000", "m", api_key_env=None)


# ---------------------------------------------------------------------------------------------------------------
# local transformers model
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    from skill_sd_trl.models.tiny import build_tiny_model, build_tokenizer

    tok = build_tokenizer()
    return build_tiny_model(tok), tok


def test_tiny_model_garbage_is_rejected(tiny):
    model, tok = tiny
    summ = TransformersSummarizer(model, tok, max_new_tokens=24, max_prompt_chars=1200, name="tiny")
    text = summ.summarize([win6(), loser()])
    assert isinstance(text, str)
    with pytest.raises(SkillParseError):
        parse_skill(text)
    with pytest.raises(SummarizerError, match=r"exceeds the model's 4096 positions; lower max_prompt_chars"):
        TransformersSummarizer(model, tok, max_new_tokens=5000).summarize([win4()])
    with pytest.raises(ValueError, match="pass tokenizer=... together with a model object"):
        TransformersSummarizer(model)


def test_local_model_decodes_only_new_tokens(tiny):
    """A test double with the real tokenizer: generate() appends a valid skill after the prompt."""
    import torch

    _, tok = tiny
    answer = json.dumps(SKILL)

    class EchoModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.config = type("C", (), {"max_position_embeddings": 100_000, "_name_or_path": "echo"})()
            self.seen = None

        def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, pad_token_id, **extra):
            self.seen = dict(prompt_len=input_ids.shape[1], do_sample=do_sample, max_new_tokens=max_new_tokens,
                             **extra)
            new = torch.tensor([tok.encode(answer, add_special_tokens=False) + [tok.eos_token_id]])
            return torch.cat([input_ids, new], dim=1)

    model = EchoModel()
    summ = TransformersSummarizer(model, tok, max_new_tokens=64, generation_kwargs={"repetition_penalty": 1.2})
    text = summ.summarize([win4()])
    assert text == answer and parse_skill(text).content() == SKILL
    assert model.seen["do_sample"] is False and model.seen["max_new_tokens"] == 64 and model.seen["prompt_len"] > 50
    assert model.seen["repetition_penalty"] == 1.2
    assert summ.name == "transformers:echo"


def test_local_model_from_path(tmp_path):
    from skill_sd_trl.models.tiny import save_tiny_model

    path = save_tiny_model(tmp_path / "tiny-summ")
    summ = TransformersSummarizer(path, max_new_tokens=8, max_prompt_chars=600)
    assert summ.name == "transformers:tiny-summ"
    assert isinstance(summ.summarize([win4()]), str)


def test_app_world_golden_workflow_is_the_solving_code_as_the_agent_writes_it():
    """A solved app-world task's golden workflow is the code that solved it, one fenced block with its line breaks:
    played back into the same task it solves it again (before, each cell was squeezed onto one line and clipped)."""
    import re

    from skill_sd_trl.envs.registry import load_environment
    from skill_sd_trl.models.warmstart import solved_skill_entry

    spec = load_environment("appworld_offline", {"prompt_style": "compact", "held_out_templates": 8})
    for row in spec.demonstrations(3, 0, [0]):
        workflow = solved_skill_entry(spec, row).golden_workflow
        (code,) = re.findall(r"```python\n(.*?)\n```", workflow, flags=re.S)
        assert code == row["ground_truth"].strip()
        env = spec.make_env()
        env.reset(row)
        env.step(f"```python\n{code}\n```")
        assert env.score().success
        env.close()
