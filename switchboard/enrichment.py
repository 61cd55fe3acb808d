"""Enrichment: links between the objects of different systems, so agents can join across them.

A Stripe customer is linked to the HubSpot contact with its email (`email`), to the HubSpot
company whose domain is its email's domain (`domain`, free-mail domains excepted) and, through
that contact, to the contact's deals. A call is linked to the HubSpot deal its CRM context names
(`crm_context`, as Gong's extensive call data carries it) and, by its external participants'
emails, to their contacts and those contacts' deals (`email`).

Links are derived state: for each "from" object (customer, call) the whole set of its links is
recomputed from the stored records and reconciled with `entity_links` — new links inserted,
changed ones updated, stale ones removed — so re-processing changes nothing and a changed email
or domain re-links. A changed HubSpot object re-links every customer and call it touches; to
find those by index instead of scanning call transcripts, each customer and call also keeps
`identity` links to its email addresses and domain (to_kind `email` / `domain`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, delete, func, or_, select, tuple_
from sqlalchemy.orm import Session

from switchboard.db.locks import lock_names
from switchboard.db.models import EntityLink, SourceRecord
from switchboard.db.records import RecordIn

CUSTOMER = "stripe:customer"
CONTACT = "hubspot:contact"
COMPANY = "hubspot:company"
DEAL = "hubspot:deal"
CALL = "calls:call"
EMAIL = "email"  # identity nodes: what a customer or call is known by
DOMAIN = "domain"
IDENTITY_KINDS = (EMAIL, DOMAIN)

# How sure a link is, by (from, to, link type): an exact email is near-certain, a shared domain
# less so (one company, several workspaces), a deal reached through a contact less again.
CONFIDENCE = {
    (CUSTOMER, CONTACT, "email"): 0.95,
    (CUSTOMER, COMPANY, "domain"): 0.8,
    (CUSTOMER, DEAL, "email"): 0.75,
    (CALL, DEAL, "crm_context"): 1.0,
    (CALL, CONTACT, "email"): 0.9,
    (CALL, DEAL, "email"): 0.7,
    (CUSTOMER, EMAIL, "identity"): 1.0,
    (CUSTOMER, DOMAIN, "identity"): 1.0,
    (CALL, EMAIL, "identity"): 1.0,
}

# A shared mailbox provider says nothing about the company.
FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "msn.com", "icloud.com",
    "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "web.de", "yandex.ru", "mail.ru",
    "qq.com", "163.com",
})  # fmt: skip

MAX_MATCHES = 200  # links of one kind one object may get (contacts of one email, …)
MAX_AFFECTED = 5000  # customers and calls one batch of changes may re-link


@dataclass(frozen=True)
class Link:
    from_kind: str
    from_id: str
    to_kind: str
    to_id: str
    link_type: str
    evidence: dict[str, Any]

    @property
    def confidence(self) -> float:
        return CONFIDENCE[(self.from_kind, self.to_kind, self.link_type)]

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.from_kind, self.from_id, self.to_kind, self.to_id, self.link_type)


# --- reading the records ------------------------------------------------------------------------


def normalise_email(value: Any) -> str | None:
    """A lower-cased address, or None when ``value`` is not one."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "@" in domain or "." not in domain:
        return None
    return email


def normalise_domain(value: Any) -> str | None:
    """A bare lower-cased domain from what HubSpot stores ("https://www.Acme.com/" → "acme.com")."""
    if not isinstance(value, str):
        return None
    domain = value.strip().lower().split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    domain = domain.removeprefix("www.")
    return domain if "." in domain else None


def _properties(data: dict[str, Any]) -> dict[str, Any]:
    properties = data.get("properties")
    return properties if isinstance(properties, dict) else {}


def call_participant_emails(call: dict[str, Any]) -> set[str]:
    """Emails of the call's non-internal participants (Gong `parties[].emailAddress`)."""
    emails: set[str] = set()
    for party in call.get("parties") or []:
        if isinstance(party, dict) and str(party.get("affiliation") or "").lower() != "internal":
            email = normalise_email(party.get("emailAddress") or party.get("email"))
            if email:
                emails.add(email)
    return emails


def call_crm_deals(call: dict[str, Any]) -> set[str]:
    """HubSpot deal ids named by the call's CRM context (call-level and per-party `context`)."""
    contexts = list(call.get("context") or [])
    for party in call.get("parties") or []:
        if isinstance(party, dict):
            contexts.extend(party.get("context") or [])
    deals: set[str] = set()
    for context in contexts:
        if not isinstance(context, dict) or str(context.get("system") or "").lower() != "hubspot":
            continue
        for obj in context.get("objects") or []:
            if isinstance(obj, dict) and str(obj.get("objectType") or "").lower() == "deal" and obj.get("objectId"):
                deals.add(str(obj["objectId"]))
    return deals


def deal_contact_ids(deal: dict[str, Any]) -> set[str]:
    """Contact ids associated with a deal: `["1", 2]` or HubSpot's `{"results": [{"id": …}]}`."""
    associations = deal.get("associations")
    associated = associations.get("contacts") if isinstance(associations, dict) else None
    if isinstance(associated, dict):
        associated = associated.get("results")
    ids: set[str] = set()
    for item in associated or []:
        value = item.get("id") if isinstance(item, dict) else item
        if isinstance(value, str | int) and str(value):
            ids.add(str(value))
    return ids


def _records(session: Session, kind: str, *conditions: Any) -> list[SourceRecord]:
    source, object_type = kind.split(":", 1)
    return list(
        session.scalars(
            select(SourceRecord)
            .where(SourceRecord.source == source, SourceRecord.object_type == object_type, *conditions)
            .order_by(SourceRecord.id)
            # the caller may have changed these rows in this transaction: read them as they are now
            .execution_options(populate_existing=True)
        )
    )


def _text_contains(values: Iterable[str]) -> Any:
    # A portable pre-filter (JSONB on PostgreSQL, JSON text on SQLite); callers check exactly.
    text = cast(SourceRecord.data, Text)
    return or_(*(text.icontains(value, autoescape=True) for value in values))


def _batches(values: Iterable[Any], size: int) -> Iterator[list[Any]]:
    items = sorted(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Matches:
    """The HubSpot records a batch of customers and calls can link to, looked up once per batch
    (one query per kind and chunk, not per object)."""

    contacts: dict[str, list[SourceRecord]] = field(default_factory=dict)  # email → contacts
    companies: dict[str, list[SourceRecord]] = field(default_factory=dict)  # domain → companies
    deals: dict[str, dict[str, SourceRecord]] = field(default_factory=dict)  # contact id → deal id → deal

    def contacts_of(self, email: str) -> list[SourceRecord]:
        return self.contacts.get(email, [])[:MAX_MATCHES]

    def deals_of(self, contacts: list[SourceRecord]) -> list[tuple[SourceRecord, str]]:
        """Deals associated with any of the contacts, each with the first contact (by id) that links it."""
        found: dict[str, tuple[SourceRecord, str]] = {}
        for contact in sorted(contacts, key=lambda c: c.object_id):
            for deal_id, deal in sorted(self.deals.get(contact.object_id, {}).items()):
                found.setdefault(deal_id, (deal, contact.object_id))
        return [found[deal_id] for deal_id in sorted(found)][:MAX_MATCHES]


def find_matches(session: Session, emails: set[str], domains: set[str]) -> Matches:
    """Contacts with these emails, companies with these domains, and those contacts' deals."""
    matches = Matches()
    email = func.lower(SourceRecord.data[("properties", "email")].as_string())
    for batch in _batches(emails, 500):
        for contact in _records(session, CONTACT, email.in_(batch)):
            if key := normalise_email(_properties(contact.data).get("email")):
                matches.contacts.setdefault(key, []).append(contact)
    domain = SourceRecord.data[("properties", "domain")].as_string()
    for batch in _batches(domains, 200):
        for company in _records(session, COMPANY, or_(*(domain.icontains(d, autoescape=True) for d in batch))):
            key = normalise_domain(_properties(company.data).get("domain"))
            if key in domains:
                matches.companies.setdefault(key, []).append(company)
    contact_ids = {c.object_id for found in matches.contacts.values() for c in found}
    for batch in _batches(contact_ids, 200):
        for deal in _records(session, DEAL, _text_contains(batch)):
            for contact_id in deal_contact_ids(deal.data) & contact_ids:
                matches.deals.setdefault(contact_id, {})[deal.object_id] = deal
    return matches


# --- the links of one object --------------------------------------------------------------------


def customer_identity(customer: dict[str, Any]) -> tuple[str | None, str | None]:
    """A customer's email and (unless free-mail) its domain."""
    email = normalise_email(customer.get("email"))
    domain = email.rsplit("@", 1)[1] if email else None
    return email, (domain if domain not in FREE_MAIL_DOMAINS else None)


def customer_links(matches: Matches, customer_id: str, customer: dict[str, Any]) -> list[Link]:
    """Every link a Stripe customer should have, given the stored HubSpot records."""
    email, domain = customer_identity(customer)
    if email is None:
        return []
    contacts = matches.contacts_of(email)
    links = [Link(CUSTOMER, customer_id, EMAIL, email, "identity", {})]
    links += [Link(CUSTOMER, customer_id, CONTACT, c.object_id, "email", {"email": email}) for c in contacts]
    if domain is not None:
        links.append(Link(CUSTOMER, customer_id, DOMAIN, domain, "identity", {}))
        links += [
            Link(CUSTOMER, customer_id, COMPANY, c.object_id, "domain", {"domain": domain})
            for c in matches.companies.get(domain, [])[:MAX_MATCHES]
        ]
    links += [
        Link(CUSTOMER, customer_id, DEAL, deal.object_id, "email", {"email": email, "via_contact": contact})
        for deal, contact in matches.deals_of(contacts)
    ]
    return links


def call_links(matches: Matches, call_id: str, call: dict[str, Any]) -> list[Link]:
    """Every link a call should have: its CRM-context deals, its participants' contacts and their deals."""
    links = [
        Link(CALL, call_id, DEAL, deal, "crm_context", {"system": "HubSpot"}) for deal in sorted(call_crm_deals(call))
    ]
    contacts: list[SourceRecord] = []
    email_of: dict[str, str] = {}
    for email in sorted(call_participant_emails(call)):
        links.append(Link(CALL, call_id, EMAIL, email, "identity", {}))
        for contact in matches.contacts_of(email):
            contacts.append(contact)
            email_of[contact.object_id] = email
            links.append(Link(CALL, call_id, CONTACT, contact.object_id, "email", {"email": email}))
    links += [
        Link(CALL, call_id, DEAL, deal.object_id, "email", {"email": email_of[contact], "via_contact": contact})
        for deal, contact in matches.deals_of(contacts)
    ]
    return links


def relink(session: Session, keys: set[tuple[str, str]]) -> dict[str, int]:
    """Reconcile the stored links of these customers and calls with what the records say now.

    Returns counts of links added, updated and removed."""
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for batch in _batches(keys, 500):
        condition = tuple_(SourceRecord.source, SourceRecord.object_type, SourceRecord.object_id).in_(
            [_record_key(kind, object_id) for kind, object_id in batch]
        )
        for record in session.scalars(select(SourceRecord).where(condition).execution_options(populate_existing=True)):
            records[(f"{record.source}:{record.object_type}", record.object_id)] = record.data
    emails: set[str] = set()
    domains: set[str] = set()
    for (kind, _), data in records.items():
        if kind == CUSTOMER:
            email, domain = customer_identity(data)
            emails |= {email} if email else set()
            domains |= {domain} if domain else set()
        else:
            emails |= call_participant_emails(data)
    matches = find_matches(session, emails, domains)
    wanted: dict[tuple[str, str, str, str, str], Link] = {}
    for (kind, object_id), data in records.items():
        derive = customer_links if kind == CUSTOMER else call_links
        wanted.update((link.key, link) for link in derive(matches, object_id, data))
    stored: dict[tuple[str, str, str, str, str], EntityLink] = {}
    for batch in _batches(keys, 500):
        rows = session.scalars(select(EntityLink).where(tuple_(EntityLink.from_kind, EntityLink.from_id).in_(batch)))
        stored.update(((r.from_kind, r.from_id, r.to_kind, r.to_id, r.link_type), r) for r in rows)
    counts = {"added": 0, "updated": 0, "removed": 0}
    for key, link in wanted.items():
        row = stored.get(key)
        if row is None:
            session.add(EntityLink(from_kind=link.from_kind, from_id=link.from_id, to_kind=link.to_kind,
                                   to_id=link.to_id, link_type=link.link_type, confidence=link.confidence,
                                   evidence=link.evidence))  # fmt: skip
            counts["added"] += 1
        elif row.confidence != link.confidence or row.evidence != link.evidence:
            row.confidence, row.evidence = link.confidence, link.evidence
            counts["updated"] += 1
    stale = [row.id for key, row in stored.items() if key not in wanted]
    for batch in _batches(stale, 1000):
        session.execute(delete(EntityLink).where(EntityLink.id.in_(batch)))
    counts["removed"] = len(stale)
    session.flush()
    return counts


# --- what a changed record affects --------------------------------------------------------------


def _linked_to(session: Session, kind: str, ids: set[str]) -> set[tuple[str, str]]:
    if not ids:
        return set()
    rows = session.execute(
        select(EntityLink.from_kind, EntityLink.from_id)
        .where(EntityLink.to_kind == kind, EntityLink.to_id.in_(sorted(ids)))
        .distinct()
        .limit(MAX_AFFECTED)
    )
    return {(str(row.from_kind), str(row.from_id)) for row in rows}


def affected_by(session: Session, records: Iterable[RecordIn]) -> set[tuple[str, str]]:
    """The customers and calls whose links may change because ``records`` changed: the changed
    customers and calls themselves, whatever links to a changed contact, company or deal (it may
    have stopped matching), what is known by a contact's new email or a company's new domain,
    and what reaches a changed deal through its contacts. Index lookups only."""
    affected: set[tuple[str, str]] = set()
    targets: dict[str, set[str]] = {}
    for record in records:
        kind = f"{record.source}:{record.object_type}"
        if kind in (CUSTOMER, CALL):
            affected.add((kind, record.object_id))
            continue
        properties = _properties(record.data)
        if kind == CONTACT:
            targets.setdefault(CONTACT, set()).add(record.object_id)
            if email := normalise_email(properties.get("email")):
                targets.setdefault(EMAIL, set()).add(email)
        elif kind == COMPANY:
            targets.setdefault(COMPANY, set()).add(record.object_id)
            if domain := normalise_domain(properties.get("domain")):
                targets.setdefault(DOMAIN, set()).add(domain)
        elif kind == DEAL:
            targets.setdefault(DEAL, set()).add(record.object_id)
            targets.setdefault(CONTACT, set()).update(deal_contact_ids(record.data))
    for kind, ids in sorted(targets.items()):
        affected |= _linked_to(session, kind, ids)
    return {(k, i) for k, i in affected if k in (CUSTOMER, CALL)}


def enrich(session: Session, records: Iterable[RecordIn]) -> dict[str, int]:
    """Re-link everything the changed ``records`` touch; returns counts of links added/updated/removed."""
    affected = affected_by(session, records)
    lock_names(session, (f"entity_links:{kind}:{object_id}" for kind, object_id in affected))
    return {"relinked": len(affected), **relink(session, affected)}


# --- reading the links --------------------------------------------------------------------------

_SUMMARY_FIELDS = {
    CUSTOMER: ("email", "name", "description"),
    CONTACT: ("email", "firstname", "lastname", "company", "hubspot_owner_id"),
    COMPANY: ("name", "domain", "hubspot_owner_id"),
    DEAL: ("dealname", "dealstage", "amount", "closedate", "hubspot_owner_id"),
    CALL: ("title", "started", "duration", "disposition", "primaryUserId"),
}


def _summary(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    values = {**data, **_properties(data)}
    return {name: values[name] for name in _SUMMARY_FIELDS.get(kind, ()) if values.get(name) not in (None, "")}


def _record_key(kind: str, object_id: str) -> tuple[str, str, str]:
    source, _, object_type = kind.partition(":")
    return source, object_type, object_id


def linked_entities(session: Session, kind: str, object_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """The objects linked to (or from) one object, strongest first, each with a short summary of
    its stored record (``found`` is False when the linked object is not stored yet)."""
    rows = session.scalars(
        select(EntityLink)
        .where(
            or_(
                (EntityLink.from_kind == kind) & (EntityLink.from_id == object_id),
                (EntityLink.to_kind == kind) & (EntityLink.to_id == object_id),
            ),
            EntityLink.link_type != "identity",
        )
        .order_by(EntityLink.confidence.desc(), EntityLink.id)
        .limit(limit)
    ).all()
    others = [
        (row.to_kind, row.to_id, "to") if (row.from_kind, row.from_id) == (kind, object_id)
        else (row.from_kind, row.from_id, "from")
        for row in rows
    ]  # fmt: skip
    keys = {_record_key(k, i) for k, i, _ in others}
    records = {
        (r.source, r.object_type, r.object_id): r.data
        for r in session.scalars(
            select(SourceRecord).where(tuple_(SourceRecord.source, SourceRecord.object_type, SourceRecord.object_id)
                                       .in_(sorted(keys)))
        )
    } if keys else {}  # fmt: skip
    out = []
    for row, (other_kind, other_id, direction) in zip(rows, others, strict=True):
        data = records.get(_record_key(other_kind, other_id))
        out.append({
            "kind": other_kind, "id": other_id, "direction": direction, "link_type": row.link_type,
            "confidence": row.confidence, "evidence": row.evidence, "found": data is not None,
            "summary": _summary(other_kind, data) if data is not None else {},
        })  # fmt: skip
    return out
