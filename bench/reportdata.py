"""A month of realistic traffic for report benchmarks: N clicks over the 30 days before `end`,
written straight into a migrated clickloop database (SQLite file or PostgreSQL URL).

Deterministic for a seed and an end time. What it models (docs/reports.md, "Benchmark"):
50 campaigns (Zipf-like traffic) on 5 traffic sources, 40 offers in 4 affiliate networks,
~60 countries (Zipf), device/OS/browser from ~30 real user agents (parsed by clickloop's own
parser), language mostly the country's, referrer domains, keyword, creative, ad campaign,
placement (`source`), zones in sub_id_1 (~200k distinct at 10M clicks, Zipf), sub_id_2..4 of
moderate cardinality, visitors (IP + user agent) of whom ~25% click the same campaign again
within minutes, `is_unique` by the 24-hour rule, cost models (cpc, cpc_param, none, and CPA
campaigns whose postbacks carry a cost), ~2% converted (lead/sale/rejected, rebills), some
conversions days after their click.

Reuse it from a script in bench/: `sys.path.insert(0, str(Path(__file__).resolve().parent))`,
`from reportdata import generate`. The report aggregates are not filled: run
`clickloop reports rebuild` afterwards. Loading drops the secondary indexes of clicks and
conversions and recreates them at the end (much faster than maintaining them row by row).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.engine import Engine, make_url

from clickloop.domain.clicks import new_subid
from clickloop.services import entities
from clickloop.services.visitors import describe_user_agent
from clickloop.storage import tables as t
from clickloop.storage.db import make_engine, upgrade
from clickloop.storage.sqlite_driver import sqlite3

DAYS = 30
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CHUNK = 100_000
CAMPAIGNS = 50
OFFERS = 40
NETWORKS = ("AdCombo", "Everad", "Dr.Cash", "CPA Nation")
SOURCES = ("PropellerAds", "RichAds", "Zeropark", "TrafficStars", "Facebook")
# Zones: enough ranks that a Zipf(1.1) draw of 10M clicks meets ~200k of them.
ZONES = 320_000
CONVERSION_RATE = 0.02
REPEAT_SHARE = 0.25  # clicks by a visitor who clicked the same campaign minutes before

# (country, its usual Accept-Language tag), most traffic first.
COUNTRIES = [
    ("US", "en-US"), ("IN", "en-IN"), ("BR", "pt-BR"), ("ID", "id-ID"), ("MX", "es-MX"),
    ("DE", "de-DE"), ("FR", "fr-FR"), ("GB", "en-GB"), ("TR", "tr-TR"), ("VN", "vi-VN"),
    ("TH", "th-TH"), ("PH", "en-PH"), ("IT", "it-IT"), ("ES", "es-ES"), ("PL", "pl-PL"),
    ("RU", "ru-RU"), ("JP", "ja-JP"), ("KR", "ko-KR"), ("CA", "en-CA"), ("AU", "en-AU"),
    ("AR", "es-AR"), ("CO", "es-CO"), ("EG", "ar-EG"), ("NG", "en-NG"), ("PK", "ur-PK"),
    ("BD", "bn-BD"), ("MY", "ms-MY"), ("ZA", "en-ZA"), ("SA", "ar-SA"), ("NL", "nl-NL"),
    ("UA", "uk-UA"), ("RO", "ro-RO"), ("PE", "es-PE"), ("CL", "es-CL"), ("KE", "en-KE"),
    ("DZ", "ar-DZ"), ("MA", "ar-MA"), ("IQ", "ar-IQ"), ("KZ", "ru-KZ"), ("PT", "pt-PT"),
    ("BE", "nl-BE"), ("SE", "sv-SE"), ("CZ", "cs-CZ"), ("GR", "el-GR"), ("HU", "hu-HU"),
    ("AT", "de-AT"), ("CH", "de-CH"), ("IL", "he-IL"), ("AE", "ar-AE"), ("SG", "en-SG"),
    ("TW", "zh-TW"), ("HK", "zh-HK"), ("NZ", "en-NZ"), ("IE", "en-IE"), ("DK", "da-DK"),
    ("FI", "fi-FI"), ("NO", "nb-NO"), ("RS", "sr-RS"), ("BG", "bg-BG"), ("EC", "es-EC"),
]  # fmt: skip

# (user agent, weight): a push/pop/social mobile-heavy mix, a few tablets and desktops, a bot.
USER_AGENTS = [
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/124.0.6367.82 Mobile Safari/537.36", 14),
    ("Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/123.0.6312.118 Mobile Safari/537.36", 12),
    ("Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/122.0.6261.119 Mobile Safari/537.36", 10),
    ("Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/123.0.6312.99 Mobile Safari/537.36", 4),
    ("Mozilla/5.0 (Linux; Android 11; vivo 1906) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/121.0.6167.178 Mobile Safari/537.36", 5),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko)"
     " SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36", 6),
    ("Mozilla/5.0 (Linux; U; Android 10; en-US; RMX2185 Build/QP1A.190711.020) AppleWebKit/537.36"
     " (KHTML, like Gecko) Version/4.0 Chrome/78.0.3904.108 UCBrowser/13.4.0.1306"
     " Mobile Safari/537.36", 3),
    ("Mozilla/5.0 (Linux; Android 12; CPH2205) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/120.0.6099.144 Mobile Safari/537.36 OPR/79.0.4195.76741", 2),
    ("Mozilla/5.0 (Linux; Android 13; SM-A145F Build/TP1A.220624.014; wv) AppleWebKit/537.36"
     " (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.54 Mobile Safari/537.36"
     " [FB_IAB/FB4A;FBAV/460.0.0.48.109;]", 5),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
     " (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", 9),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15"
     " (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", 5),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15"
     " (KHTML, like Gecko) CriOS/124.0.6367.71 Mobile/15E148 Safari/604.1", 2),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
     " (KHTML, like Gecko) Mobile/21E219 [FBAN/FBIOS;FBAV/459.0.0.38.107;FBBV/581325561]", 3),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
     " Version/16.6 Mobile/15E148 Safari/604.1", 2),
    ("Mozilla/5.0 (Linux; Android 12; SM-T505) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/123.0.6312.99 Safari/537.36", 1),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/124.0.0.0 Safari/537.36", 7),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67", 2),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", 1),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
     " Version/17.4 Safari/605.1.15", 2),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/124.0.0.0 Safari/537.36", 1),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/123.0.0.0 Safari/537.36", 1),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Chrome/124.0.0.0 Safari/537.36", 1),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 1),
]  # fmt: skip

WORDS_A = (
    "best", "cheap", "free", "fast", "top", "new", "online", "secure", "easy", "private",
    "mobile", "smart", "quick", "safe", "instant", "daily", "pro", "real", "simple", "local",
)  # fmt: skip
WORDS_B = (
    "vpn", "loans", "dating", "games", "casino", "diet", "crypto", "insurance", "antivirus",
    "cleaner", "booster", "sweepstakes", "shopping", "coupons", "tarot", "horoscope", "weather",
    "news", "video", "music", "flights", "hotels", "betting", "keto", "forex", "jobs",
)  # fmt: skip
WORDS_C = (
    "2024", "app", "online", "now", "today", "deal", "offer", "review", "download", "android",
    "iphone", "usa",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Summary:
    clicks: int
    conversions: int
    unique_share: float
    seconds: float


@dataclass(frozen=True, slots=True)
class Entities:
    campaign_ids: NDArray[np.int64]  # by campaign rank (rank 0 gets the most traffic)
    campaign_source: NDArray[np.int64]  # traffic source id per campaign rank
    campaign_model: list[str]  # cost model per campaign rank: cpc | cpc_param | none | cpa
    campaign_price: NDArray[np.int64]  # micro-units: fixed CPC, or the mean bid of cpc_param
    campaign_offers: NDArray[np.int64]  # [rank, slot] offer ids (3 slots, repeated if fewer)
    campaign_offer_cdf: NDArray[np.float64]  # [rank, slot] cumulative weights
    offer_payout: dict[int, int]  # micro-units


def zipf_weights(n: int, s: float) -> NDArray[np.float64]:
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return weights / weights.sum()


def draw(rng: np.random.Generator, weights: NDArray[np.float64], size: int) -> NDArray[np.int64]:
    """Indexes drawn with `weights` (a CDF search: fast for large weight vectors too)."""
    cdf = np.cumsum(weights)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(size), side="right").astype(np.int64)


def create_entities(engine: Engine, rng: np.random.Generator, now: datetime) -> Entities:
    """Sources, networks, offers and campaigns through clickloop's own services."""
    parameters = [
        {"name": "external_id", "param": "clickid", "macro": "{clickid}"},
        {"name": "cost", "param": "cost", "macro": "{cost}"},
        {"name": "keyword", "param": "kw", "macro": "{keyword}"},
        {"name": "creative_id", "param": "banner", "macro": "{banner_id}"},
        {"name": "ad_campaign_id", "param": "cid", "macro": "{campaign_id}"},
        {"name": "source", "param": "site", "macro": "{site}"},
        {"name": "sub_id_1", "param": "zone", "macro": "{zoneid}"},
        {"name": "sub_id_2", "param": "pub", "macro": "{publisher}"},
        {"name": "sub_id_3", "param": "carrier", "macro": "{carrier}"},
        {"name": "sub_id_4", "param": "bid", "macro": "{bid_id}"},
    ]
    models = ["cpc", "cpc_param", "none", "cpa"]
    with engine.begin() as conn:
        sources = [
            entities.add_traffic_source(conn, name=name, now=now, parameters=parameters)
            for name in SOURCES
        ]
        networks = [
            entities.add_affiliate_network(conn, name=name, now=now, offer_params="sub1={subid}")
            for name in NETWORKS
        ]
        payouts = rng.choice([2, 5, 8, 12, 18, 25, 40, 60], size=OFFERS)
        offer_payout: dict[int, int] = {}
        offer_ids = []
        for n in range(OFFERS):
            payout = int(payouts[n])
            offer = entities.add_offer(
                conn, name=f"Offer {n + 1:02d}", url=f"https://offers.example/o{n + 1}?s={{subid}}",
                now=now, affiliate_network_id=networks[n % len(networks)], payout=str(payout),
            )  # fmt: skip
            offer_ids.append(offer)
            offer_payout[offer] = payout * 1_000_000
        campaign_ids, campaign_source, campaign_model, campaign_price = [], [], [], []
        campaign_offers, campaign_cdf = [], []
        for rank in range(CAMPAIGNS):
            model = models[rank % len(models)]
            price = int(rng.integers(2, 60)) * 1000  # 0.002 .. 0.059
            count = int(rng.integers(1, 4))
            chosen = [int(x) for x in rng.choice(offer_ids, size=count, replace=False)]
            weights = [int(x) for x in rng.integers(20, 100, size=count)]
            source = sources[rank % len(sources)]
            campaign = entities.add_campaign(
                conn, name=f"Campaign {rank + 1:02d}", alias=f"c{rank + 1:02d}", now=now,
                offers=list(zip(chosen, weights, strict=True)), traffic_source_id=source,
                cost_model=model if model != "cpa" else "none",
                cost_value=Decimal(price).scaleb(-6) if model == "cpc" else Decimal(0),
            )  # fmt: skip
            campaign_ids.append(campaign)
            campaign_source.append(source)
            campaign_model.append(model)
            campaign_price.append(price)
            slots = (chosen * 3)[:3]
            cdf = np.cumsum(np.array(weights + [0] * (3 - count), dtype=np.float64))
            campaign_offers.append(slots)
            campaign_cdf.append(cdf / cdf[-1])
    return Entities(
        campaign_ids=np.array(campaign_ids, dtype=np.int64),
        campaign_source=np.array(campaign_source, dtype=np.int64),
        campaign_model=campaign_model,
        campaign_price=np.array(campaign_price, dtype=np.int64),
        campaign_offers=np.array(campaign_offers, dtype=np.int64),
        campaign_offer_cdf=np.array(campaign_cdf),
        offer_payout=offer_payout,
    )


def click_times(rng: np.random.Generator, n: int, end_ms: int) -> NDArray[np.int64]:
    """`n` sorted epoch milliseconds in the 30 days before `end_ms`, busier in the evening."""
    start = end_ms - DAYS * DAY_MS
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        candidates = rng.integers(start, end_ms, size=int((n - out.size) * 1.6) + 16)
        hour = (candidates // HOUR_MS) % 24
        keep = rng.random(candidates.size) < 0.55 + 0.45 * np.sin((hour - 9) / 24 * 2 * np.pi)
        out = np.concatenate([out, candidates[keep]])
    return np.sort(out[:n])


def visitors(
    rng: np.random.Generator, times: NDArray[np.int64], campaign: NDArray[np.int64]
) -> NDArray[np.int64]:
    """A visitor id per click: a new one, or (REPEAT_SHARE) the visitor of one of the previous
    ~20 clicks on the same campaign (minutes before)."""
    n = times.size
    order = np.lexsort((times, campaign))  # by campaign, then time
    sorted_campaign = campaign[order]
    back = rng.geometric(0.15, size=n)
    position = np.arange(n)
    parent = position - back
    repeat = (rng.random(n) < REPEAT_SHARE) & (parent >= 0)
    repeat[repeat] &= sorted_campaign[parent[repeat]] == sorted_campaign[repeat]
    visitor = np.where(repeat, parent, position)
    while True:  # follow chains of repeats down to the first click of each visitor
        followed = visitor[visitor]
        if np.array_equal(followed, visitor):
            break
        visitor = followed
    result = np.empty(n, dtype=np.int64)
    result[order] = order[visitor]  # the visitor is named by the index of its first click
    return result


def unique_flags(
    ip: NDArray[np.int64], ua: NDArray[np.int64], campaign: NDArray[np.int64], times: Any
) -> NDArray[np.bool_]:
    """The 24-hour rule: unique unless the same IP and user agent clicked the same campaign in
    the 24 hours before."""
    order = np.lexsort((times, campaign, ua, ip))
    same = np.zeros(times.size, dtype=np.bool_)
    a, b = order[1:], order[:-1]
    same[1:] = (ip[a] == ip[b]) & (ua[a] == ua[b]) & (campaign[a] == campaign[b])
    recent = np.zeros(times.size, dtype=np.bool_)
    recent[1:] = same[1:] & (times[a] - times[b] < DAY_MS)
    flags = np.empty(times.size, dtype=np.bool_)
    flags[order] = ~recent
    return flags


def ip_text(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _vocabulary(values: Sequence[str | None]) -> NDArray[np.object_]:
    return np.array(list(values), dtype=object)


class Columns:
    """Every click column as a numpy array (indexes into small vocabularies for text)."""

    def __init__(self, rng: np.random.Generator, ent: Entities, n: int, end_ms: int) -> None:
        self.n = n
        self.ms = click_times(rng, n, end_ms)
        self.rank = draw(rng, zipf_weights(CAMPAIGNS, 0.9), n)
        self.campaign = ent.campaign_ids[self.rank]
        self.source = ent.campaign_source[self.rank]
        slot = (rng.random(n)[:, None] > ent.campaign_offer_cdf[self.rank]).sum(axis=1)
        self.offer = ent.campaign_offers[self.rank, np.minimum(slot, 2)]
        visitor = visitors(rng, self.ms, self.rank)
        # A visitor's country, user agent and language come from its first click.
        self.country = draw(rng, zipf_weights(len(COUNTRIES), 1.05), n)[visitor]
        ua_weights = np.array([w for _, w in USER_AGENTS], dtype=np.float64)
        self.ua = draw(rng, ua_weights / ua_weights.sum(), n)[visitor]
        self.ip = ((visitor * 2654435761 + 0x5BD1E995) % (2**32 - 2**24) + 2**24).astype(np.int64)
        self.english = (rng.random(n) < 0.2)[visitor]
        self.is_unique = unique_flags(self.ip, self.ua, self.rank, self.ms)
        self.keyword = draw(rng, zipf_weights(len(WORDS_A) * len(WORDS_B) * len(WORDS_C), 1.0), n)
        self.creative = rng.integers(0, 200, size=n) + 1000 * (self.source % 7)
        self.ad_campaign = rng.integers(0, 6, size=n) + 6 * self.rank
        self.placement = draw(rng, zipf_weights(3000, 1.0), n)
        self.zone = draw(rng, zipf_weights(ZONES, 1.1), n)
        self.sub2 = draw(rng, zipf_weights(2000, 1.0), n)
        self.sub3 = draw(rng, zipf_weights(40, 1.2), n)
        self.sub4 = rng.integers(0, 500, size=n)
        referred = rng.random(n) < 0.7
        self.referrer = np.where(referred, draw(rng, zipf_weights(800, 1.1), n), -1)
        self.www = rng.random(n) < 0.3
        self.external = rng.integers(0, 2**63, size=n, dtype=np.int64)
        self.subid_bits = rng.integers(0, 2**63, size=n, dtype=np.int64)
        model = np.array(ent.campaign_model)[self.rank]
        bid = ent.campaign_price[self.rank] * rng.lognormal(0, 0.35, size=n)
        self.cost = np.where(
            model == "cpc",
            ent.campaign_price[self.rank],
            np.where(model == "cpc_param", np.round(bid / 10) * 10, -1),
        ).astype(np.int64)  # micro-units; -1 = none
        self.cpa = model == "cpa"


def conversions_of(
    rng: np.random.Generator, cols: Columns, ent: Entities, end_ms: int
) -> list[tuple[int, str, str, str, int, int | None, int]]:
    """(click index, tid, type, original status, payout µ, cost µ or None, converted ms) for
    ~2% of the clicks (rates differ by campaign), with rebills after some sales; the conversions
    that would happen after `end_ms` are left out (they have not happened yet)."""
    campaign_rate = CONVERSION_RATE * rng.lognormal(0, 0.6, size=CAMPAIGNS)
    campaign_rate *= CONVERSION_RATE / np.average(campaign_rate, weights=zipf_weights(50, 0.9))
    converted = np.flatnonzero(rng.random(cols.n) < campaign_rate[cols.rank])
    kinds = rng.choice(3, size=converted.size, p=[0.45, 0.40, 0.15])
    delay_kind = rng.choice(3, size=converted.size, p=[0.65, 0.27, 0.08])
    delay = np.choose(
        delay_kind,
        [
            rng.exponential(20 * 60_000, converted.size),
            rng.uniform(HOUR_MS, 2 * DAY_MS, converted.size),
            rng.uniform(2 * DAY_MS, 7 * DAY_MS, converted.size),
        ],
    ).astype(np.int64)
    rebills = np.where(
        (kinds == 1) & (rng.random(converted.size) < 0.15), rng.integers(1, 4, converted.size), 0
    )
    names = [("lead", "pending"), ("sale", "approved"), ("rejected", "declined")]
    result = []
    for i, kind, wait, more in zip(
        converted.tolist(), kinds.tolist(), delay.tolist(), rebills.tolist(), strict=True
    ):
        at = int(cols.ms[i]) + wait
        if at >= end_ms:
            continue
        payout = 0 if kind == 2 else ent.offer_payout[int(cols.offer[i])]
        cost = payout * 4 // 10 if cols.cpa[i] and kind != 2 else None
        result.append((i, "", *names[kind], payout, cost, at))
        for number in range(1, more + 1):
            at += 7 * DAY_MS
            if at >= end_ms:
                break
            result.append((i, f"rebill-{number}", "rebill", "rebill", payout // 2, None, at))
    return result


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


CLICK_COLUMNS = (
    "subid", "created_at", "campaign_id", "offer_id", "traffic_source_id", "external_id",
    "keyword", "cost", "creative_id", "ad_campaign_id", "source", "sub_id_1", "sub_id_2",
    "sub_id_3", "sub_id_4", "ip", "user_agent", "referrer", "language", "country", "os",
    "browser", "device_type", "referrer_domain", "is_unique",
)  # fmt: skip
CONVERSION_COLUMNS = (
    "subid", "tid", "type", "original_status", "payout", "currency", "original_payout",
    "original_currency", "rate", "cost", "campaign_id", "offer_id", "traffic_source_id",
    "params", "converted_at", "created_at", "updated_at",
)  # fmt: skip


def click_rows(
    cols: Columns, subids: list[str], click_cost: dict[int, int]
) -> Iterator[list[tuple[Any, ...]]]:
    """Click rows in chunks, as tuples in CLICK_COLUMNS order (datetimes as SQLite text)."""
    keywords = _vocabulary(
        [f"{a} {b} {c}" for b in WORDS_B for a in WORDS_A for c in WORDS_C]
    )  # most common first: the Zipf rank runs over nouns first
    agents = [ua for ua, _ in USER_AGENTS]
    described = [describe_user_agent(ua) for ua in agents]
    domains = _vocabulary([f"{WORDS_B[n % len(WORDS_B)]}-{n}.example" for n in range(800)])
    zones = _vocabulary([str(1_000_000 + (z * 7919) % 8_999_999) for z in range(ZONES)])
    for start in range(0, cols.n, CHUNK):
        part = slice(start, min(start + CHUNK, cols.n))
        index = range(part.start, part.stop)
        ms = cols.ms[part].tolist()
        ua = cols.ua[part].tolist()
        country = cols.country[part].tolist()
        english = cols.english[part].tolist()
        referrer = cols.referrer[part].tolist()
        www = cols.www[part].tolist()
        cost = cols.cost[part].tolist()
        rows = [
            (
                subids[i],
                _iso(ms[k]),
                campaign,
                offer,
                source,
                f"{external:016x}",
                keyword,
                click_cost.get(i, cost[k] if cost[k] >= 0 else None),
                f"cr{creative}",
                f"ac{ad_campaign}",
                f"site{placement}.example",
                zone,
                f"pub{sub2}",
                f"carrier{sub3}",
                f"bid{sub4}",
                ip_text(ip),
                agents[ua[k]],
                None
                if referrer[k] < 0
                else f"https://{'www.' if www[k] else ''}{domains[referrer[k]]}/p/{i % 97}",
                "en-US" if english[k] else COUNTRIES[country[k]][1],
                COUNTRIES[country[k]][0],
                described[ua[k]].os,
                described[ua[k]].browser,
                described[ua[k]].device_type,
                None if referrer[k] < 0 else domains[referrer[k]],
                unique,
            )
            for k, (
                i, campaign, offer, source, external, keyword, creative, ad_campaign, placement,
                zone, sub2, sub3, sub4, ip, unique,
            ) in enumerate(
                zip(
                    index,
                    cols.campaign[part].tolist(),
                    cols.offer[part].tolist(),
                    cols.source[part].tolist(),
                    cols.external[part].tolist(),
                    keywords[cols.keyword[part]].tolist(),
                    cols.creative[part].tolist(),
                    cols.ad_campaign[part].tolist(),
                    cols.placement[part].tolist(),
                    zones[cols.zone[part]].tolist(),
                    cols.sub2[part].tolist(),
                    cols.sub3[part].tolist(),
                    cols.sub4[part].tolist(),
                    cols.ip[part].tolist(),
                    cols.is_unique[part].tolist(),
                    strict=True,
                )
            )
        ]  # fmt: skip
        yield rows


def conversion_rows(
    cols: Columns, subids: list[str], conversions: list[Any], currency: str
) -> list[tuple[Any, ...]]:
    rows = []
    for i, tid, kind, status, payout, cost, at in conversions:
        moment = _iso(at)
        rows.append(
            (
                subids[i], tid, kind, status, payout, currency, payout, currency, "1", cost,
                int(cols.campaign[i]), int(cols.offer[i]), int(cols.source[i]), "{}",
                moment, moment, moment,
            )
        )  # fmt: skip
    return rows


class Loader:
    """Bulk writes into one backend, its secondary indexes dropped meanwhile."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self.indexes: list[str] = []

    def __enter__(self) -> Loader:
        if self.sqlite:
            path = make_url(self.url).database or ""
            self.db: Any = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.execute("PRAGMA cache_size=-262144")
            found = self.db.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                " AND tbl_name IN ('clicks', 'conversions')"
            ).fetchall()
            for name, sql in found:
                self.db.execute(f'DROP INDEX "{name}"')
                self.indexes.append(sql)
        else:
            plain = make_url(self.url).set(drivername="postgresql").render_as_string(False)
            self.db = psycopg.connect(plain, autocommit=True)
            self.db.execute("SET synchronous_commit = off")
            self.db.execute("SET TIME ZONE 'UTC'")  # the generated times are UTC
            found = self.db.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i"
                " WHERE i.tablename IN ('clicks', 'conversions')"
                " AND i.schemaname = current_schema()"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
            ).fetchall()
            for name, sql in found:
                self.db.execute(f'DROP INDEX IF EXISTS "{name}"')
                # pg_indexes writes a partitioned table's index `ON ONLY` the parent: made again
                # so, it would stay invalid and the partitions would have none.
                self.indexes.append(sql.replace(" ON ONLY ", " ON ", 1))
        return self

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if self.sqlite:
            marks = ", ".join("?" * len(columns))
            self.db.execute("BEGIN")
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            self.db.executemany(insert, rows)
            self.db.execute("COMMIT")
            return
        with self.db.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            copy.write("".join(["\t".join(map(_copy_text, row)) + "\n" for row in rows]))

    def __exit__(self, *exc: object) -> None:
        for sql in self.indexes:
            self.db.execute(sql)
        if self.sqlite:
            # The aggregates are left empty for `clickloop reports rebuild` to fill: a fold of
            # every click past the watermark first would be work the rebuild throws away.
            self.db.execute(
                "UPDATE cube_watermarks SET position = (SELECT coalesce(max(rowid), 0) FROM clicks)"
                " WHERE name = 'clicks'"
            )
        self.db.execute("ANALYZE")
        self.db.close()


def _copy_text(value: Any) -> str:
    """A value in COPY's text format (generated values never hold tabs or backslashes)."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    return str(value)


def generate(
    database_url: str,
    clicks: int,
    *,
    seed: int = 16,
    end: datetime | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Summary:
    """Migrate the database at `database_url` (it must hold no clicks) and fill it."""
    started = time.monotonic()
    end = end or datetime.now(UTC).replace(microsecond=0)
    end_ms = int(end.timestamp() * 1000)
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        entities.ensure_settings(engine)
        with engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(t.clicks)).scalar_one():
                raise SystemExit(f"{database_url} holds clicks already: give an empty database")
        currency = str(entities.get_settings(engine)["currency"])
        rng = np.random.default_rng(seed)
        made = create_entities(engine, rng, end - timedelta(days=DAYS + 1))
    finally:
        engine.dispose()
    report = progress or (lambda stage, done, total: None)
    report("drawing", 0, clicks)
    cols = Columns(rng, made, clicks, end_ms)
    pairs = zip(cols.ms.tolist(), cols.subid_bits.tolist(), strict=True)
    subids = [new_subid(ms, bits) for ms, bits in pairs]
    conversions = conversions_of(rng, cols, made, end_ms)
    # A postback's cost is written to its click too (the server does the same).
    click_cost = {i: cost for i, _, _, _, _, cost, _ in conversions if cost is not None}
    with Loader(database_url) as load:
        done = 0
        for rows in click_rows(cols, subids, click_cost):
            load.write("clicks", CLICK_COLUMNS, rows)
            done += len(rows)
            report("clicks", done, clicks)
        rows = conversion_rows(cols, subids, conversions, currency)
        for start in range(0, len(rows), CHUNK):
            load.write("conversions", CONVERSION_COLUMNS, rows[start : start + CHUNK])
        report("indexes", clicks, clicks)
    return Summary(
        clicks=clicks,
        conversions=len(conversions),
        unique_share=float(cols.is_unique.mean()) if clicks else 0.0,
        seconds=time.monotonic() - started,
    )
