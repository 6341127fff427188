"""Simulates API Management gateway traffic in the four real event shapes, keeping its ground truth."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import zip_longest
from pathlib import Path

import orjson

from devtools import shapes
from devtools.hostshape import HostEvent

CANONICAL = "canonical"
TOOLKIT = "genai-gateway-toolkit"
TOKEN_USAGE = "token-usage-object"  # noqa: S105 - a shape name, not a secret
AI_HUB = "ai-hub-gateway"
SHAPES = (CANONICAL, TOOLKIT, TOKEN_USAGE, AI_HUB)

TOOLKIT_SUBSCRIPTIONS = (
    "aoai-product-subscription-one",
    "aoai-product-subscription-two",
    "aoai-product-subscription-three",
)
"""The three APIM subscriptions of the GenAI gateway toolkit's usage-tracking scenario."""

SUBSCRIPTION_POOL = (*TOOLKIT_SUBSCRIPTIONS, "hr-chatbot-prod", "finance-copilot", "hr-chatbot-dev", "genai-toolkit")
"""Subscriptions in the order a scenario takes them; beyond these, ``team-NN`` ones are made up."""

LOSSY_SUBSCRIPTION = "aoai-product-subscription-two"
"""Whose events the event path loses (by default): the export counts them, the hub never sees them."""

PROVISIONED_DEPLOYMENT = "gpt-4o-ptu"
PROVISIONED_TEAMS = ("hr-chatbot-prod", "finance-copilot")
"""The teams whose long-document workload the provisioned deployment was bought for: they send most
of their calls there, with prompts of tens of thousands of tokens; other teams reach it rarely."""
PROVISIONED_TEAM_WEIGHT = 3.0
"""How much busier the provisioned deployment's teams are than the others."""

TOOLKIT_MAX_TOKENS = (5, 20)
"""The toolkit's load test asks for a random ``max_tokens`` in this range."""

DAY_MARGIN = timedelta(minutes=1)
"""Requests end this long before midnight, so an event and its enqueued time share a UTC day."""

MAX_ENQUEUE_DELAY_SECONDS = 3.0

METRIC_NAMES = ("Total Tokens", "Prompt Tokens", "Completion Tokens")
EXPORT_HEADER = ("TimeGenerated", "Name", "Sum", "ItemCount", "Properties")
SUBSCRIPTION_DIMENSION = "Subscription ID"


CHAT = "ChatCompletions_Create"
EMBEDDINGS = "Embeddings_Create"
_OPERATION_NAMES = {
    CHAT: "Creates a completion for the chat message",
    EMBEDDINGS: "Return the embeddings for a given prompt.",
}


@dataclass(frozen=True, slots=True)
class _Model:
    model: str
    deployment: str
    operation_id: str
    weight: int

    @property
    def operation_name(self) -> str:
        return _OPERATION_NAMES[self.operation_id]

    @property
    def embeddings(self) -> bool:
        return self.operation_id == EMBEDDINGS


_CATALOG = (
    _Model("gpt-4o-2024-08-06", "gpt-4o", CHAT, 30),
    _Model("gpt-4o-mini-2024-07-18", "gpt-4o-mini", CHAT, 30),
    _Model("text-embedding-3-large", "embeddings", EMBEDDINGS, 15),
    _Model("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini", CHAT, 10),
    _Model("gpt-4o-2024-08-06", PROVISIONED_DEPLOYMENT, CHAT, 2),
)
_PROVISIONED_CATALOG = (*_CATALOG[:-1], dataclasses.replace(_CATALOG[-1], weight=200))
"""What the provisioned deployment's teams call: mostly the deployment bought for them."""
_LONG_PROMPT = (10.8, 0.5, 120_000)
"""A provisioned call's prompt: log-normal around 49,000 tokens (long documents), at most 120,000."""
_TOOLKIT_MODEL = _Model("gpt-4o-mini-2024-07-18", "gpt-4o-mini", CHAT, 1)
_RICH_SHAPES = ((CANONICAL, 55), (AI_HUB, 25), (TOKEN_USAGE, 10), (TOOLKIT, 10))
_PROVISIONED_SHAPES = ((CANONICAL, 70), (AI_HUB, 30))
"""The provisioned deployment's calls go through policies that name the deployment, so its tokens
are known to be its own (an event without a deployment is priced blended, as a deployment unknown)."""
_TOOLKIT_SHAPES = ((TOOLKIT, 75), (TOKEN_USAGE, 25))


@dataclass(frozen=True, slots=True)
class Request:
    """One call the gateway served: what really happened, and the event its policy wrote."""

    subscription_id: str
    time: datetime
    enqueued_time: datetime
    model: str
    deployment: str
    operation: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    shape: str
    body: bytes

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Malformed:
    """An event no parser can apply; the pipeline must dead-letter it, not count it."""

    body: bytes
    enqueued_time: datetime
    partition_key: str
    kind: str


@dataclass(frozen=True, slots=True)
class Tally:
    requests: int = 0
    total_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.requests + other.requests,
            self.total_tokens + other.total_tokens,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    @classmethod
    def of(cls, request: Request) -> Tally:
        return cls(1, request.total_tokens, request.prompt_tokens, request.completion_tokens)


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What the ledger must end up holding, and what Azure Monitor saw."""

    ledger: dict[str, Tally]
    """Per subscription, the requests whose events reached the hub: what must be counted, once."""
    monitor: dict[str, Tally]
    """Per subscription, every request the gateway served: what the AppMetrics export holds."""
    lost: dict[str, Tally]
    """Per subscription, the requests whose events the event path lost."""
    daily_tokens: dict[tuple[date, str], int]
    """Tokens the ledger must hold per (UTC day, subscription)."""
    dead_letters: int
    streamed: dict[str, Tally] = field(default_factory=dict)
    """Per subscription, the streamed requests the LLM logs bill (part of ``ledger``)."""
    unattributed: Tally = Tally()
    """Streamed requests whose gateway-log row is missing: shown as unattributed, billed to nobody yet."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """What to simulate; the same scenario and seed always give the same traffic, byte for byte."""

    start: datetime
    days: int = 30
    requests: int = 2000
    subscriptions: int = 6
    seed: int = 20261127
    toolkit_share: float = 0.25
    """The part of the requests that is the GenAI gateway toolkit's own scenario."""
    lossy_subscription: str | None = LOSSY_SUBSCRIPTION
    loss_fraction: float = 0.05
    """The part of the lossy subscription's tokens whose events never reach the hub."""
    malformed: int | None = None
    """How many malformed events to mix in; by default one per 200 requests, at least 4."""
    streamed_share: float = 0.0
    """The part of all requests that streams: chat calls with no usage event, billed from the LLM logs."""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("the scenario's start must be timezone-aware")
        if self.days < 1 or self.requests < 1 or self.subscriptions < 1:
            raise ValueError("days, requests and subscriptions must be at least 1")

    @property
    def subscription_ids(self) -> tuple[str, ...]:
        return subscription_names(self.subscriptions)

    @property
    def malformed_count(self) -> int:
        return self.malformed if self.malformed is not None else max(4, self.requests // 200)


def subscription_names(count: int) -> tuple[str, ...]:
    """The first ``count`` subscriptions of the pool, then made-up team subscriptions."""
    extra = (f"team-{index:02d}" for index in range(len(SUBSCRIPTION_POOL) + 1, count + 1))
    return (*SUBSCRIPTION_POOL[:count], *extra)


def partition_for(partition_key: str, partitions: int) -> str:
    """The partition a key lands on; stable, like the hub's own hashing of a partition key."""
    digest = hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).digest()
    return str(int.from_bytes(digest[:8], "big") % partitions)


@dataclass(frozen=True)
class Traffic:
    """A simulated stretch of gateway traffic and the events it produced."""

    scenario: Scenario
    requests: tuple[Request, ...]
    malformed: tuple[Malformed, ...]
    lost: frozenset[int] = field(default_factory=frozenset)
    """Indices into ``requests`` of the events the event path lost."""
    streamed: frozenset[int] = field(default_factory=frozenset)
    """Indices into ``requests`` of the streamed calls: no usage event, only LLM-log rows."""
    orphan: int | None = None
    """Index of the one streamed call whose gateway-log row is missing (no subscription in the LLM logs)."""

    def delivered(self) -> list[Request]:
        """The requests whose usage event reaches the hub."""
        return [r for index, r in enumerate(self.requests) if index not in self.lost and index not in self.streamed]

    def hub_events(self) -> list[tuple[bytes, datetime, str]]:
        """Every event that reaches the hub, as (body, enqueued time, partition key), in enqueued order."""
        events = [(r.body, r.enqueued_time, r.subscription_id) for r in self.delivered()]
        events += [(m.body, m.enqueued_time, m.partition_key) for m in self.malformed]
        events.sort(key=lambda event: event[1])
        return events

    def partitions(self, count: int) -> dict[str, list[HostEvent]]:
        """The hub's partitions as the host reads them: sequence numbers from 0, in enqueued order."""
        streams: dict[str, list[HostEvent]] = {str(p): [] for p in range(count)}
        for body, enqueued, key in self.hub_events():
            stream = streams[partition_for(key, count)]
            stream.append(HostEvent(body, len(stream), enqueued, key))
        return streams

    def truth(self) -> GroundTruth:
        ledger: dict[str, Tally] = {}
        monitor: dict[str, Tally] = {}
        lost: dict[str, Tally] = {}
        streamed: dict[str, Tally] = {}
        unattributed = Tally()
        daily: dict[tuple[date, str], int] = {}
        for index, request in enumerate(self.requests):
            tally = Tally.of(request)
            subscription = request.subscription_id
            monitor[subscription] = monitor.get(subscription, Tally()) + tally
            if index in self.lost:
                lost[subscription] = lost.get(subscription, Tally()) + tally
                continue
            if index == self.orphan:
                unattributed += tally
                continue
            if index in self.streamed:
                streamed[subscription] = streamed.get(subscription, Tally()) + tally
            ledger[subscription] = ledger.get(subscription, Tally()) + tally
            day = (request.time.date(), subscription)
            daily[day] = daily.get(day, 0) + request.total_tokens
        return GroundTruth(ledger, monitor, lost, daily, len(self.malformed), streamed, unattributed)


def simulate(scenario: Scenario) -> Traffic:
    """Generate the scenario's requests, its malformed events, and which events the path loses."""
    rng = random.Random(scenario.seed)  # noqa: S311 - a reproducible simulation, not a secret
    subscriptions = scenario.subscription_ids
    toolkit = [s for s in subscriptions if s in TOOLKIT_SUBSCRIPTIONS]
    weights = [
        rng.uniform(0.5, 3.0) * (PROVISIONED_TEAM_WEIGHT if s in PROVISIONED_TEAMS else 1) for s in subscriptions
    ]
    toolkit_requests = round(scenario.requests * scenario.toolkit_share) if toolkit else 0
    requests = [_toolkit_request(rng, scenario, rng.choice(toolkit)) for _ in range(toolkit_requests)]
    for _ in range(scenario.requests - toolkit_requests):
        subscription = rng.choices(subscriptions, weights)[0]
        requests.append(_rich_request(rng, scenario, subscription))
    requests.sort(key=lambda request: request.enqueued_time)
    malformed = tuple(_malformed(rng, scenario, index) for index in range(scenario.malformed_count))
    streamed = _streamed(scenario, requests)
    lost = _lose(rng, scenario, requests, streamed)
    return Traffic(scenario, tuple(requests), malformed, lost, streamed, _orphan(scenario, requests, streamed))


def _streamed(scenario: Scenario, requests: Sequence[Request]) -> frozenset[int]:
    """Chat calls that stream, ``streamed_share`` of all requests; an rng of their own keeps the rest unchanged."""
    chat = [i for i, r in enumerate(requests) if r.operation == CHAT]
    if not chat or scenario.streamed_share <= 0:
        return frozenset()
    rng = random.Random(f"{scenario.seed}-streamed")  # noqa: S311 - a reproducible simulation
    chance = min(1.0, scenario.streamed_share * len(requests) / len(chat))
    return frozenset(i for i in chat if rng.random() < chance)


def _orphan(scenario: Scenario, requests: Sequence[Request], streamed: frozenset[int]) -> int | None:
    """The smallest streamed call outside the lossy subscription: its gateway-log row goes missing."""
    candidates = [i for i in sorted(streamed) if requests[i].subscription_id != scenario.lossy_subscription]
    return min(candidates, key=lambda i: (requests[i].total_tokens, i)) if candidates else None


def _lose(
    rng: random.Random, scenario: Scenario, requests: Sequence[Request], streamed: frozenset[int] = frozenset()
) -> frozenset[int]:
    """Pick the lossy subscription's events to lose until they hold ``loss_fraction`` of its event-path tokens."""
    if scenario.lossy_subscription is None:
        return frozenset()
    mine = [i for i, r in enumerate(requests) if r.subscription_id == scenario.lossy_subscription and i not in streamed]
    if len(mine) < 2:
        return frozenset()
    total = sum(requests[i].total_tokens for i in mine)
    rng.shuffle(mine)
    lost: set[int] = set()
    lost_tokens = 0
    for index in mine[:-1]:
        if lost_tokens >= total * scenario.loss_fraction:
            break
        lost.add(index)
        lost_tokens += requests[index].total_tokens
    return frozenset(lost)


def _moment(rng: random.Random, scenario: Scenario) -> datetime:
    day = rng.randrange(scenario.days)
    weekday = (scenario.start + timedelta(days=day)).weekday()
    if weekday >= 5 and rng.random() < 0.6:  # quieter weekends: move most of them to a weekday
        day = rng.randrange(scenario.days)
    seconds = rng.triangular(0, (timedelta(days=1) - DAY_MARGIN).total_seconds(), 14 * 3600)
    return scenario.start + timedelta(days=day, seconds=int(seconds), milliseconds=rng.randrange(1000))


def _enqueued(rng: random.Random, moment: datetime) -> datetime:
    return moment + timedelta(seconds=rng.uniform(0.05, MAX_ENQUEUE_DELAY_SECONDS))


def _pick(rng: random.Random, table: Sequence[tuple[str, int]]) -> str:
    return rng.choices([name for name, _ in table], [weight for _, weight in table])[0]


def _toolkit_request(rng: random.Random, scenario: Scenario, subscription: str) -> Request:
    """A request of the toolkit's load test: a short prompt and a random ``max_tokens`` of 5 to 20."""
    moment = _moment(rng, scenario)
    max_tokens = rng.randint(*TOOLKIT_MAX_TOKENS)
    completion = max_tokens if rng.random() < 0.7 else rng.randint(1, max_tokens)
    prompt = rng.randint(8, 24)
    shape = _pick(rng, _TOOLKIT_SHAPES)
    return _request(
        rng,
        subscription=subscription,
        moment=moment,
        model=_TOOLKIT_MODEL,
        prompt=prompt,
        completion=completion,
        cached=0,
        shape=shape,
    )


def _rich_request(rng: random.Random, scenario: Scenario, subscription: str) -> Request:
    moment = _moment(rng, scenario)
    catalog = _PROVISIONED_CATALOG if subscription in PROVISIONED_TEAMS else _CATALOG
    model = rng.choices(catalog, [m.weight for m in catalog])[0]
    if model.embeddings:
        prompt, completion, cached = rng.randint(50, 4000), 0, 0
    elif model.deployment == PROVISIONED_DEPLOYMENT:
        mu, sigma, most = _LONG_PROMPT
        prompt = min(int(rng.lognormvariate(mu, sigma)), most)
        completion = int(rng.lognormvariate(6.5, 0.5))
        cached = (prompt * rng.randint(2, 6) // 10) // 128 * 128 if rng.random() < 0.5 else 0
    else:
        prompt = int(rng.lognormvariate(7.0, 0.8))
        completion = int(rng.lognormvariate(5.5, 0.7))
        cached = (prompt * rng.randint(2, 9) // 10) // 128 * 128 if rng.random() < 0.35 else 0
    shape = _pick(rng, _PROVISIONED_SHAPES if model.deployment == PROVISIONED_DEPLOYMENT else _RICH_SHAPES)
    return _request(
        rng,
        subscription=subscription,
        moment=moment,
        model=model,
        prompt=prompt,
        completion=completion,
        cached=cached,
        shape=shape,
    )


def _request(
    rng: random.Random,
    *,
    subscription: str,
    moment: datetime,
    model: _Model,
    prompt: int,
    completion: int,
    cached: int,
    shape: str,
) -> Request:
    request = Request(
        subscription_id=subscription,
        time=moment,
        enqueued_time=_enqueued(rng, moment),
        model=model.model,
        deployment=model.deployment,
        operation=model.operation_id,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        shape=shape,
        body=b"",
    )
    call = shapes.Call(
        subscription_id=subscription,
        time=moment,
        model=model.model,
        deployment=model.deployment,
        operation_id=model.operation_id,
        operation_name=model.operation_name,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        embeddings=model.embeddings,
        provisioned=model.deployment == PROVISIONED_DEPLOYMENT,
    )
    return dataclasses.replace(request, body=shapes.body(shape, call, rng))


def _malformed(rng: random.Random, scenario: Scenario, index: int) -> Malformed:
    subscription = rng.choice(scenario.subscription_ids)
    moment = _moment(rng, scenario)
    when = shapes.dotnet_time(moment, twelve_hour=True)
    kinds: tuple[tuple[str, bytes], ...] = (
        ("not_json", b'{"SubscriptionId":"' + subscription.encode() + b'","TotalTokens":"27"'),
        ("missing_subscription", orjson.dumps({"Type": "Message", "EventTime": when, "TotalTokens": "19"})),
        ("negative_tokens", orjson.dumps({"SubscriptionId": subscription, "TotalTokens": "-12"})),
        ("invalid_tokens", orjson.dumps({"SubscriptionId": subscription, "TokenUsage": {"prompt_tokens": "many"}})),
        ("not_utf8", b'{"SubscriptionId":"\xff\xfe","TotalTokens":"5"}'),
    )
    kind, body = kinds[index % len(kinds)]
    return Malformed(body, _enqueued(rng, moment), subscription, kind)


# --------------------------------------------------------------------------------------------
# Azure Monitor's side: the AppMetrics rows emit-token-metric leaves, pre-aggregated per hour


def appmetrics_rows(requests: Iterable[Request]) -> list[tuple[str, str, int, int, str]]:
    """AppMetrics rows (TimeGenerated, Name, Sum, ItemCount, Properties) per hour and subscription."""
    buckets: dict[tuple[datetime, str], Tally] = {}
    for request in requests:
        hour = request.time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        key = (hour, request.subscription_id)
        buckets[key] = buckets.get(key, Tally()) + Tally.of(request)
    rows: list[tuple[str, str, int, int, str]] = []
    for (hour, subscription), tally in sorted(buckets.items()):
        when = hour.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
        properties = json.dumps({SUBSCRIPTION_DIMENSION: subscription, "API ID": "azure-openai"})
        sums = (tally.total_tokens, tally.prompt_tokens, tally.completion_tokens)
        rows.extend(
            (when, name, value, tally.requests, properties) for name, value in zip(METRIC_NAMES, sums, strict=True)
        )
    return rows


def appmetrics_csv(requests: Iterable[Request]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_HEADER)
    writer.writerows(appmetrics_rows(requests))
    return buffer.getvalue()


# API Management's LLM logs: every call, joined to its gateway-log row for the subscription

LLM_LOG_HEADER = (
    "TimeGenerated",
    "CorrelationId",
    "ApimSubscriptionId",
    "ModelName",
    "DeploymentName",
    "OperationName",
    "PromptTokens",
    "CompletionTokens",
    "TotalTokens",
    "IsStreamCompletion",
    "SequenceNumber",
)


def llm_log_rows(traffic: Traffic) -> list[tuple[object, ...]]:
    """The joined LLM-log rows of every call, streamed or not; every fourth streamed exchange is split
    over two to four rows (the counts repeated on each, or on the first only), and the orphan call's
    subscription is empty, as when its gateway-log row is missing."""
    rows: list[tuple[object, ...]] = []
    for index, request in enumerate(traffic.requests):
        streamed = index in traffic.streamed
        correlation = str(uuid.UUID(bytes=hashlib.md5(f"{traffic.scenario.seed}-{index}".encode()).digest()))  # noqa: S324
        subscription = "" if index == traffic.orphan else request.subscription_id
        time = request.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        counts = (request.prompt_tokens, request.completion_tokens, request.total_tokens)
        parts = 2 + index % 3 if streamed and index % 4 == 0 else 1
        for sequence in range(parts):
            repeated = sequence == 0 or index % 8 == 0
            tokens = counts if repeated else (0, 0, 0)
            row = (time, correlation, subscription, request.model, request.deployment, request.operation)
            rows.append((*row, *tokens, "true" if streamed else "false", sequence))
    return rows


def write_llm_log_export(traffic: Traffic, path: Path) -> int:
    """Write the joined LLM-log rows of every call; return how many rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LLM_LOG_HEADER)
    rows = llm_log_rows(traffic)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return len(rows)


def write_appmetrics_export(traffic: Traffic, path: Path) -> int:
    """Write the export of every request the gateway served (lost events included); return its rows."""
    text = appmetrics_csv(traffic.requests)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text.count("\n") - 1


# --------------------------------------------------------------------------------------------
# The host's side: batches per partition, with the redeliveries an at-least-once stream makes

NEW = "new"
REPLAY = "replay"
OVERLAP = "overlap"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One invocation of the Event Hub function: a batch of one partition."""

    partition_id: str
    events: tuple[HostEvent, ...]
    kind: str
    """``new``; ``replay``, a batch delivered again whole; ``overlap``, starting inside applied events."""


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    min_batch: int = 10
    max_batch: int = 80
    replay_chance: float = 0.15
    overlap_chance: float = 0.15


def deliveries(streams: dict[str, list[HostEvent]], *, seed: int, plan: DeliveryPlan | None = None) -> list[Delivery]:
    """Batches for every partition, interleaved as concurrent partitions are, redeliveries included.

    Within a partition a redelivery starts at or before the first event not yet applied, as a
    host resuming from its last checkpoint does; at the end of each partition one early batch
    comes again, as from a second reader or a Capture replay.
    """
    plan = plan or DeliveryPlan()
    rng = random.Random(seed ^ 0x5EED)  # noqa: S311 - a reproducible simulation
    per_partition = [_partition_deliveries(pid, events, rng, plan) for pid, events in sorted(streams.items())]
    interleaved = zip_longest(*per_partition)
    return [delivery for round_ in interleaved for delivery in round_ if delivery is not None]


def _partition_deliveries(
    partition_id: str, events: Sequence[HostEvent], rng: random.Random, plan: DeliveryPlan
) -> list[Delivery]:
    out: list[Delivery] = []
    cursor = 0
    while cursor < len(events):
        size = rng.randint(plan.min_batch, plan.max_batch)
        start = cursor
        if out and rng.random() < plan.overlap_chance:
            start = max(0, cursor - rng.randint(1, size))
        end = min(len(events), cursor + size)
        batch = tuple(events[start:end])
        out.append(Delivery(partition_id, batch, OVERLAP if start < cursor else NEW))
        if rng.random() < plan.replay_chance:
            out.append(Delivery(partition_id, batch, REPLAY))
        cursor = end
    if out:
        out.append(Delivery(partition_id, rng.choice(out).events, REPLAY))
    return out
