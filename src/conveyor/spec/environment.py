"""One environment of the pipeline and every policy it carries, with the checks that span its blocks."""

from __future__ import annotations

from pydantic import Field, PrivateAttr, model_validator

from conveyor.spec.data import Backups, DataPolicy, Recovery, Resources
from conveyor.spec.fields import Issue, SpecModel, Text, raise_issues
from conveyor.spec.operations import Alerts, Budget, Logs, Router, Scale, Slos
from conveyor.spec.policies import Access, Approvals, Promotion, Windows
from conveyor.spec.settings import ConfigName, ConfigValue, SecretName, SecretRef
from conveyor.spec.strategy import Strategy
from conveyor.spec.types import Duration, Percent
from conveyor.spec.vocabulary import LIVE_TIERS, TierName


class Environment(SpecModel):
    """A named stage with a tier and its policies; the name is its key under `environments`."""

    tier: TierName
    """Kind of environment; real data is allowed only in production and dr, which never expire."""
    purpose: Text | None = None
    """What this environment is for."""
    owner: Text | None = None
    """Team responsible for it."""
    data: DataPolicy = DataPolicy()
    """Data policy: synthetic, masked or real."""
    scale: Scale = Scale()
    """Expected traffic and instances."""
    uptime_sla: Percent | None = None
    """Uptime promised to users; null promises none."""
    slos: Slos = Slos()
    """Service level objectives."""
    budget: Budget | None = None
    """Monthly cost limit; null sets none."""
    access: Access = Access()
    """Roles allowed to act here, per action."""
    approvals: Approvals = Approvals()
    """Reviews a promotion needs."""
    promotion: Promotion = Promotion()
    """Automatic or requested promotion, and its gates."""
    strategy: Strategy = Strategy()
    """How a new version replaces the old."""
    config: dict[ConfigName, ConfigValue] = Field(default_factory=dict)
    """Configuration values (flat: names to strings, numbers or booleans)."""
    secrets: dict[SecretName, SecretRef] = Field(default_factory=dict)
    """Secret references; values are stored with `conveyor secret set`, never here."""
    resources: Resources = Resources()
    """Backing services: database and cache."""
    backups: Backups | None = None
    """Database backups; null takes none."""
    recovery: Recovery | None = None
    """Disaster recovery objectives; null sets none."""
    logs: Logs | None = None
    """Log retention and size."""
    alerts: Alerts = Alerts()
    """Alert routing by severity."""
    windows: Windows | None = None
    """Change windows and freezes; null allows changes at any time."""
    router: Router | None = None
    """Router port on the local runtime; null lets Conveyor pick one (previews)."""
    ttl: Duration | None = None
    """Tear the environment down this long after it was created (previews, temporary environments)."""
    idle_ttl: Duration | None = None
    """Tear the environment down after this long without a deployment or request."""

    _name: str = PrivateAttr(default="")

    @property
    def name(self) -> str:
        """The environment's name (its key under `environments`)."""
        return self._name

    @property
    def is_preview(self) -> bool:
        """Whether this is a template for per-pull-request environments."""
        return self.tier == "preview"

    @model_validator(mode="after")
    def _blocks_agree(self) -> Environment:
        issues = [
            *self._tier_issues(),
            *self._gate_needs(),
            *self._recovery_issues(),
            *self._approver_issues(),
        ]
        if self.strategy.analysis is not None and self.strategy.analysis.use_slos and self.slos.is_empty():
            issues.append(
                Issue(
                    ("strategy", "analysis", "use_slos"),
                    "analysis uses the SLOs, but this environment sets none",
                    "set slos (availability, latency, error_rate), or use_slos: false",
                )
            )
        sla, availability = self.uptime_sla, self.slos.availability
        if sla is not None and availability is not None and availability < sla:
            issues.append(
                Issue(
                    ("slos", "availability"),
                    f"the availability objective {availability} is below the uptime SLA {sla}",
                    "aim higher than you promise: the SLO should be at least the SLA",
                )
            )
        raise_issues(issues)
        roles = self.approvals.approver_roles or self.access.approve
        if roles != self.approvals.approver_roles or roles != self.access.approve:
            return self.model_copy(
                update={
                    "access": self.access.model_copy(update={"approve": roles}),
                    "approvals": self.approvals.model_copy(update={"approver_roles": roles}),
                }
            )
        return self

    def _tier_issues(self) -> list[Issue]:
        issues: list[Issue] = []
        live = self.tier in LIVE_TIERS
        if self.data.policy == "real" and not live:
            issues.append(
                Issue(
                    ("data", "policy"),
                    f"real customer data is not allowed in a {self.tier} environment",
                    "use policy: masked (with source: production) or synthetic",
                )
            )
        for key in ("ttl", "idle_ttl"):
            if live and getattr(self, key) is not None:
                issues.append(
                    Issue(
                        (key,),
                        f"a {self.tier} environment cannot expire",
                        f"remove {key}; only non-production environments have a lifetime",
                        at_key=True,
                    )
                )
        if self.is_preview and self.ttl is None and self.idle_ttl is None:
            issues.append(
                Issue(
                    ("ttl",),
                    "a preview environment needs ttl or idle_ttl",
                    "set ttl: 3d (or idle_ttl: 1d) so previews are torn down",
                )
            )
        return issues

    def _gate_needs(self) -> list[Issue]:
        issues: list[Issue] = []
        for index, gate in enumerate(self.promotion.gates):
            where = ("promotion", "gates", index)
            if gate.type == "load" and self.scale.expected_rps is None:
                issues.append(
                    Issue(
                        where,
                        "a load gate needs scale.expected_rps",
                        "set scale.expected_rps so the gate knows what 1× traffic is",
                    )
                )
            if gate.type in ("load", "chaos", "slo") and self.slos.is_empty():
                issues.append(
                    Issue(
                        where,
                        f"a {gate.type} gate needs slos to judge the result",
                        "set slos (availability, latency, error_rate) for this environment",
                    )
                )
            if gate.type == "window" and self.windows is None:
                issues.append(
                    Issue(
                        where, "a window gate needs a windows block", "add windows: with allow and/or freezes"
                    )
                )
        return issues

    def _recovery_issues(self) -> list[Issue]:
        recovery, backups = self.recovery, self.backups
        if recovery is None or recovery.method != "restore-backup":
            return []
        if backups is None:
            return [
                Issue(
                    ("recovery", "method"),
                    "restoring from backup needs a backups block",
                    "add backups: {every: 24h}, or choose another method",
                )
            ]
        if recovery.rpo is not None and not backups.point_in_time and recovery.rpo < backups.every:
            return [
                Issue(
                    ("recovery", "rpo"),
                    f"an RPO of {recovery.rpo} cannot be met with backups every {backups.every}",
                    "set backups.point_in_time: true, or back up more often",
                )
            ]
        return []

    def _approver_issues(self) -> list[Issue]:
        listed, granted = self.approvals.approver_roles, self.access.approve
        if listed and granted and set(listed) != set(granted):
            return [
                Issue(
                    ("access", "approve"),
                    "access.approve and approvals.approver_roles list different roles",
                    "list approver roles once, under approvals.approver_roles",
                )
            ]
        return [
            Issue(("approvals", *issue.path), issue.message, issue.hint, issue.at_key)
            for issue in self.approvals.pool_issues(listed or granted)
        ]
