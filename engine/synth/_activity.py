"""What people do: order lines (with discounts and returns) and behavioural events.

Everything is vectorised over a chunk. Events are tied to purchase behaviour: every order
is preceded by views, usually a cart and sometimes a search; browsing sessions without a
purchase come at the person's browse rate while active (and a trickle after dropout);
fortnightly emails are opened and clicked at the person's rates, rarely after dropout; support
tickets follow some orders and many returns.
"""

import numpy as np

from ..contract import EVENT_TYPES
from ._people import segment_ranks

EVENT_CHANNELS = ("web", "app", "email", "phone")
_VIEW, _CART, _SEARCH, _OPEN, _CLICK, _TICKET = (EVENT_TYPES.index(name) for name in EVENT_TYPES)
_WEB, _APP, _EMAIL, _PHONE = range(len(EVENT_CHANNELS))
NO_CATEGORY = -1

# Share of orders placed in each hour of the day (UTC): quiet nights, lunch and evening peaks.
_DIURNAL = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4.5, 5, 6, 5.5, 4.5, 4, 4, 4.5, 5.5, 6.5, 7, 6, 4, 2]
)
_DIURNAL = _DIURNAL / _DIURNAL.sum()
_MINUTE = 1 / 1440
_EMAIL_EVERY_DAYS = 14


def sample_rows(rng, probabilities, rows):
    """For each entry of ``rows``, draw a column index from that row of ``probabilities``."""
    cumulative = np.cumsum(probabilities, axis=1)
    drawn = (rng.random(rows.size)[:, None] > cumulative[rows]).sum(axis=1)
    return np.minimum(drawn, probabilities.shape[1] - 1)


def _with_time_of_day(rng, day):
    hour = rng.choice(24, size=day.size, p=_DIURNAL)
    return np.floor(day) + (hour + rng.random(day.size)) / 24


def order_lines(people, rng, horizon_days):
    """Transaction lines, returns included, as a dict of equal-length arrays.

    Keys: person, day, order (chunk-local order number), quantity, amount, discount,
    category, channel. Returns carry the order number of the line they return, negative
    quantity and amount, and no discount.
    """
    order_person = people.order_person
    n_orders = order_person.size
    order_day = _with_time_of_day(rng, people.order_day)
    order_channel = sample_rows(rng, people.channel_mix, order_person)
    discounted = rng.random(n_orders) < people.discount_propensity[order_person]
    discount_depth = 0.1 + 0.3 * rng.random(n_orders)
    order_value = rng.gamma(people.spend_shape[order_person], 1.0 / people.spend_nu[order_person])

    lines_per_order = np.minimum(1 + rng.poisson(people.items_per_order[order_person] - 1.0), 8)
    line_order = np.repeat(np.arange(n_orders), lines_per_order)
    line_person = order_person[line_order]
    weight = rng.gamma(2.0, size=line_order.size)
    share = weight / np.bincount(line_order, weights=weight, minlength=n_orders)[line_order]
    amount = np.maximum(np.round(order_value[line_order] * share, 2), 0.5)
    depth = discount_depth[line_order]
    discount = np.where(discounted[line_order], np.round(amount * depth / (1 - depth), 2), 0.0)

    lines = {
        "person": line_person,
        "day": order_day[line_order],
        "order": line_order,
        "quantity": (1 + rng.poisson(0.3, size=line_order.size)).astype(np.int32),
        "amount": amount,
        "discount": discount,
        "category": sample_rows(rng, people.category_mix, line_person),
        "channel": order_channel[line_order],
    }
    returned = rng.random(line_order.size) < people.return_rate[line_person]
    return_day = lines["day"] + 2 + 28 * rng.random(line_order.size)
    returned &= return_day < horizon_days
    returns = {key: values[returned] for key, values in lines.items()}
    returns["day"] = return_day[returned]
    returns["quantity"] = -returns["quantity"]
    returns["amount"] = -returns["amount"]
    returns["discount"] = np.zeros(returns["amount"].size)
    return {key: np.concatenate([lines[key], returns[key]]) for key in lines}, order_day


def _events(person, day, event_type, channel, category):
    size = person.size
    return {
        "person": person,
        "day": day,
        "event_type": np.broadcast_to(np.int8(event_type), size),
        "channel": np.broadcast_to(np.int8(channel), size) if np.isscalar(channel) else channel,
        "category": np.broadcast_to(np.int16(category), size)
        if np.isscalar(category)
        else category,
    }


def _web_or_app(rng, people, person):
    web, app = people.channel_mix[person, 0], people.channel_mix[person, 1]
    return np.where(rng.random(person.size) < app / (web + app), _APP, _WEB).astype(np.int8)


def _session_events(rng, people, person, start, spread_days, views_mean, search_p, cart_p):
    """Views (1 + Poisson), an optional search and an optional cart around each session start."""
    views = 1 + rng.poisson(views_mean, size=person.size)
    view_session = np.repeat(np.arange(person.size), views)
    view_person = person[view_session]
    parts = [
        _events(
            view_person,
            start[view_session] - rng.random(view_session.size) * spread_days,
            _VIEW,
            _web_or_app(rng, people, view_person),
            sample_rows(rng, people.category_mix, view_person).astype(np.int16),
        )
    ]
    searched = rng.random(person.size) < search_p
    parts.append(
        _events(
            person[searched],
            start[searched] - rng.random(searched.sum()) * spread_days,
            _SEARCH,
            _web_or_app(rng, people, person[searched]),
            NO_CATEGORY,
        )
    )
    carted = rng.random(person.size) < cart_p
    parts.append(
        _events(
            person[carted],
            start[carted] - rng.random(carted.sum()) * 30 * _MINUTE,
            _CART,
            _web_or_app(rng, people, person[carted]),
            sample_rows(rng, people.category_mix, person[carted]).astype(np.int16),
        )
    )
    return parts


def behavioural_events(people, rng, horizon_days, order_day, lines):
    """Events as a dict of equal-length arrays: person, day, event_type, channel, category."""
    acquired, window_end = people.acquisition_day, horizon_days
    active_end = np.minimum(people.end_of_life_day, horizon_days)
    order_person = people.order_person
    parts = _session_events(
        rng, people, order_person, order_day, 2 / 24, views_mean=0.5, search_p=0.25, cart_p=0.6
    )

    def spread_over_life(active_counts, late_counts):
        """Uniform days: each person's first ``active_counts`` while active, the rest after dropout."""
        counts = active_counts + late_counts
        person = np.repeat(np.arange(counts.size), counts)
        late = segment_ranks(counts) >= active_counts[person]
        low = np.where(late, active_end[person], acquired[person])
        high = np.where(late, window_end, active_end[person])
        return person, low + rng.random(person.size) * (high - low)

    # Browsing without buying: at the browse rate while active, a tenth of it after dropout.
    session_person, session_day = spread_over_life(
        rng.poisson(people.browse_rate * (active_end - acquired)),
        rng.poisson(0.1 * people.browse_rate * (window_end - active_end)),
    )
    parts += _session_events(
        rng,
        people,
        session_person,
        session_day + 20 * _MINUTE,
        20 * _MINUTE,
        views_mean=1.2,
        search_p=0.5,
        cart_p=people.abandon_cart_rate[session_person],
    )

    # Fortnightly emails: opened at the person's rate while active, rarely after dropout.
    sends_active = np.floor((active_end - acquired) / _EMAIL_EVERY_DAYS).astype(np.int64)
    sends_late = np.floor((window_end - active_end) / _EMAIL_EVERY_DAYS).astype(np.int64)
    open_person, open_day = spread_over_life(
        rng.binomial(sends_active, people.email_open_rate),
        rng.binomial(sends_late, 0.15 * people.email_open_rate),
    )
    parts.append(_events(open_person, open_day, _OPEN, _EMAIL, NO_CATEGORY))
    clicked = rng.random(open_person.size) < people.email_click_rate[open_person]
    click_day = open_day[clicked] + rng.random(clicked.sum()) * 15 * _MINUTE
    parts.append(_events(open_person[clicked], click_day, _CLICK, _EMAIL, NO_CATEGORY))

    # Support tickets: after some orders, and after a third of returns.
    is_return = lines["quantity"] < 0
    ticket_after_order = rng.random(order_person.size) < people.ticket_rate[order_person]
    ticket_after_return = rng.random(int(is_return.sum())) < 0.3
    ticket_person = np.concatenate(
        [order_person[ticket_after_order], lines["person"][is_return][ticket_after_return]]
    )
    ticket_from = np.concatenate(
        [order_day[ticket_after_order], lines["day"][is_return][ticket_after_return]]
    )
    ticket_day = ticket_from + 1 + 13 * rng.random(ticket_person.size)
    in_window = ticket_day < horizon_days
    ticket_channel = np.where(rng.random(ticket_person.size) < 0.4, _PHONE, _WEB).astype(np.int8)
    parts.append(
        _events(
            ticket_person[in_window],
            ticket_day[in_window],
            _TICKET,
            ticket_channel[in_window],
            NO_CATEGORY,
        )
    )
    events = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    events["day"] = np.clip(events["day"], 0.0, np.nextafter(horizon_days, 0))
    return events
