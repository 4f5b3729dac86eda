"""Accounts, identifiers and profiles: how people appear in the customer tables.

Most people have one account. Some open a second or third later, linked to the first only
through an identifier they share: the same email typed differently, the same phone number
formatted differently, or the same device. Truth keeps the person behind every account.
"""

from dataclasses import dataclass

import numpy as np

from ._archetypes import (
    AGE_BANDS,
    ARCHETYPES,
    GENDER_WEIGHTS,
    GENDERS,
    REGION_WEIGHTS,
    REGIONS,
)
from ._people import segment_ranks

LINK_TYPES = ("email_variant", "phone_reformatted", "shared_device")
EXTRA_ACCOUNT_SHARES = (0.06, 0.01)  # P(second account), P(third account)
PHONE_SHARE = 0.7

_FIRST_NAMES = np.array(
    "olivia liam emma noah ava elijah sophia james amelia william isabella lucas mia henry "
    "harper theo evelyn jack aria levi chloe mateo layla ezra nora leo zoe hugo ines omar "
    "yara ravi priya kenji yuki ana diego fatima tariq ingrid sven".split()
)
_LAST_NAMES = np.array(
    "smith jones brown taylor wilson davies evans thomas johnson roberts walker wright "
    "robinson thompson white hughes edwards green hall wood harris lewis martin jackson "
    "clarke clark turner hill scott cooper morris ward moore king watson baker patel khan "
    "nguyen garcia".split()
)
_EMAIL_DOMAINS = np.array(["example.com", "mail.example", "inbox.example", "post.example"])
# A bijection on 10-digit numbers (gcd(multiplier, 10**10) == 1), so customer ids are unique,
# stable per (person, account slot) and do not reveal which accounts belong together.
_ID_MODULUS = 10**10
# Phone numbers: area and exchange codes 200..999, four-digit lines.
_PHONE_NUMBERS = 800 * 800 * 10_000
_ID_MULTIPLIER = 1_640_531_527  # odd, not a multiple of 5; times 4 * 1e9 people fits int64


@dataclass
class Accounts:
    """Accounts of one chunk, sorted by (person, slot)."""

    person: np.ndarray  # chunk-local person index
    slot: np.ndarray  # 0 for the first account
    opened_day: np.ndarray
    link_type: np.ndarray  # "" for first accounts, else one of LINK_TYPES
    customer_id: np.ndarray  # str
    first_account: np.ndarray  # per person: row of its first account
    second_opened: np.ndarray  # per person: day the 2nd account opened (inf if none)
    third_opened: np.ndarray


def customer_ids(person_id, slot, seed):
    offset = (seed * 2_654_435_761) % _ID_MODULUS
    number = (_ID_MULTIPLIER * (person_id * 4 + slot) + offset) % _ID_MODULUS
    return np.char.add("C", np.char.zfill(number.astype(str), 10))


def phone_parts(person_id, seed):
    """Area code, exchange and line of each person's number: distinct people, distinct numbers.

    Random numbers would collide (about 40 pairs among a million people) and wrongly link
    strangers; like customer ids, numbers are a bijection of the person.
    """
    slot = (_ID_MULTIPLIER * person_id + seed) % _PHONE_NUMBERS
    return 200 + slot // (800 * 10_000), 200 + (slot // 10_000) % 800, slot % 10_000


def draw_accounts(rng, people, horizon_days, seed):
    n = people.person_id.size
    u = rng.random(n)
    extra = (u < EXTRA_ACCOUNT_SHARES[0]).astype(np.int64) + (u < EXTRA_ACCOUNT_SHARES[1])
    opened = people.acquisition_day[:, None] + rng.random((n, 2)) * (
        horizon_days - people.acquisition_day[:, None]
    )
    opened.sort(axis=1)
    opened[extra < 1, 0] = np.inf
    opened[extra < 2, 1] = np.inf

    accounts_per_person = 1 + extra
    person = np.repeat(np.arange(n), accounts_per_person)
    first_account = np.cumsum(accounts_per_person) - accounts_per_person
    slot = segment_ranks(accounts_per_person)
    opened_day = np.where(
        slot == 0,
        people.acquisition_day[person],
        opened[person, np.maximum(slot - 1, 0)],
    )
    link = rng.integers(len(LINK_TYPES), size=person.size)
    link_type = np.where(slot == 0, "", np.array(LINK_TYPES)[link])
    return Accounts(
        person=person,
        slot=slot,
        opened_day=opened_day,
        link_type=link_type,
        customer_id=customer_ids(people.person_id[person], slot, seed),
        first_account=first_account,
        second_opened=opened[:, 0],
        third_opened=opened[:, 1],
    )


def assign_accounts(rng, accounts, person, day):
    """Row of the account each (person, day) activity is recorded under: any account open then."""
    open_accounts = 1 + (day >= accounts.second_opened[person]) + (day >= accounts.third_opened[person])
    slot = np.floor(rng.random(person.size) * open_accounts).astype(np.int64)
    return accounts.first_account[person] + slot


def _phone_formats(area, exchange, line, style):
    digits = [np.char.zfill(part.astype(str), width) for part, width in ((area, 3), (exchange, 3), (line, 4))]
    area_s, exchange_s, line_s = digits
    formats = [
        np.char.add(np.char.add(np.char.add("(", area_s), ") "), np.char.add(np.char.add(exchange_s, "-"), line_s)),
        np.char.add(np.char.add(np.char.add(area_s, "-"), exchange_s), np.char.add("-", line_s)),
        np.char.add(np.char.add(np.char.add(area_s, "."), exchange_s), np.char.add(".", line_s)),
        np.char.add(np.char.add(area_s, exchange_s), line_s),
    ]
    return np.choose(style, formats)


def _device_ids(rng, size):
    raw = rng.bytes(16 * size).hex()
    return np.array([raw[32 * i : 32 * i + 32] for i in range(size)], dtype=str)


def _email_variant(rng, email):
    """The same address as a person might type it elsewhere: other case or stray spaces."""
    style = rng.integers(3, size=email.size)
    return np.choose(style, [np.char.upper(email), np.char.capitalize(email), np.char.add(" ", np.char.add(email, " "))])


def profiles_and_identities(rng, people, accounts, seed):
    """Customer profile rows and identity rows (one dict of columns each), per account."""
    n = people.person_id.size
    first = rng.choice(_FIRST_NAMES, size=n)
    last = rng.choice(_LAST_NAMES, size=n)
    domain = rng.choice(_EMAIL_DOMAINS, size=n)
    person_email = np.char.add(
        np.char.add(np.char.add(first, "."), np.char.add(last, people.person_id.astype(str))),
        np.char.add("@", domain),
    )
    has_phone = rng.random(n) < PHONE_SHARE
    area, exchange, line = phone_parts(people.person_id, seed)
    phone_style = rng.integers(4, size=n)
    person_devices = 1 + (rng.random(n) < 0.4)
    device_pool = _device_ids(rng, int(person_devices.sum()) + accounts.person.size)
    first_device = np.cumsum(person_devices) - person_devices

    p = accounts.person
    primary = accounts.slot == 0
    link = accounts.link_type
    email = np.where(
        primary,
        person_email[p],
        np.where(
            link == "email_variant",
            _email_variant(rng, person_email[p]),
            np.char.add(np.char.add(np.char.add(first[p], last[p]), np.char.add(".", accounts.customer_id)), "@example.com"),
        ),
    )
    other_style = (phone_style[p] + 1 + rng.integers(3, size=p.size)) % 4
    # A phone link needs the number on the first account too.
    has_phone[p[link == "phone_reformatted"]] = True
    phone_present = has_phone[p] & (primary | (link == "phone_reformatted"))
    phone = _phone_formats(area[p], exchange[p], line[p], np.where(primary, phone_style[p], other_style))

    # Identity rows: an email per account, a phone where present, devices (shared where linked).
    id_account = [np.arange(p.size)]
    id_type = [np.full(p.size, "email")]
    id_value = [email]
    id_account.append(np.flatnonzero(phone_present))
    id_type.append(np.full(id_account[-1].size, "phone"))
    id_value.append(phone[phone_present])
    primary_rows = np.flatnonzero(primary)
    device_owner = np.repeat(primary_rows, person_devices[p[primary_rows]])
    id_account.append(device_owner)
    id_type.append(np.full(device_owner.size, "device_id"))
    id_value.append(device_pool[: device_owner.size])
    extra_rows = np.flatnonzero(~primary)
    shares_device = link[extra_rows] == "shared_device"
    id_account.append(extra_rows)
    id_type.append(np.full(extra_rows.size, "device_id"))
    fresh_device = device_pool[device_owner.size : device_owner.size + extra_rows.size]
    id_value.append(np.where(shares_device, device_pool[first_device[p[extra_rows]]], fresh_device))
    identity_account = np.concatenate(id_account)
    order = np.argsort(identity_account, kind="stable")
    identities = {
        "account": identity_account[order],
        "id_type": np.concatenate(id_type)[order],
        "id_value": np.concatenate(id_value)[order],
    }

    archetype = people.archetype
    age_weights = np.array([a.age_weights for a in ARCHETYPES])
    age_weights = age_weights / age_weights.sum(axis=1, keepdims=True)
    age_cumulative = np.cumsum(age_weights, axis=1)[archetype]
    age_band = np.minimum((rng.random(n)[:, None] > age_cumulative).sum(axis=1), len(AGE_BANDS) - 1)
    loyalty_share = np.where(archetype == 0, 0.7, 0.2)
    profiles = {
        "account": np.arange(p.size),
        "signup_day": np.where(primary, accounts.opened_day - rng.random(p.size) * 45, accounts.opened_day),
        "region": np.array(REGIONS)[rng.choice(len(REGIONS), size=n, p=REGION_WEIGHTS)][p],
        "age_band": np.array(AGE_BANDS)[age_band][p],
        "gender": np.array(GENDERS)[rng.choice(len(GENDERS), size=n, p=GENDER_WEIGHTS)][p],
        "loyalty_member": (rng.random(n) < loyalty_share)[p],
        "full_name": np.char.add(np.char.add(np.char.capitalize(first[p]), " "), np.char.capitalize(last[p])),
        "email": email,
        "phone": np.where(phone_present, phone, None),
    }
    return profiles, identities
