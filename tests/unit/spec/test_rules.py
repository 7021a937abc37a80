"""Every validation rule of conveyor.yaml, with the exact message and fix a user sees."""

from __future__ import annotations

import pytest

from conveyor.auth.permissions import ENVIRONMENT_ACTIONS
from conveyor.spec.policies import Access
from tests.unit.spec.helpers import MINIMAL, load, one_problem, problems, with_environment, yaml


class TestUnknownKeys:
    def test_a_misspelt_key_suggests_the_right_one(self) -> None:
        problem = one_problem(with_environment("aprovals: {required: 1}"))
        assert problem.message == "unknown key 'aprovals'"
        assert problem.hint == "did you mean 'approvals'?"
        assert problem.render().endswith("unknown key 'aprovals' — did you mean 'approvals'?")
        assert (problem.path, problem.line, problem.column) == ("environments.production.aprovals", 7, 5)

    def test_a_key_like_nothing_lists_the_valid_keys(self) -> None:
        problem = one_problem(with_environment("strategy: {type: recreate, zzz: 1}"))
        assert problem.message == "unknown key 'zzz'"
        assert problem.hint == (
            "valid keys are: type, steps, keep_old, analysis, auto_rollback, sticky, max_surge"
        )

    def test_unknown_keys_inside_a_gate_name_the_gate_fields(self) -> None:
        problem = one_problem(
            with_environment(
                """
                scale: {expected_rps: 10}
                slos: {availability: 99%}
                promotion:
                  gates:
                    - {type: load, multipler: 2}
                """
            )
        )
        assert problem.path == "environments.production.promotion.gates[0].multipler"
        assert problem.hint == "did you mean 'multiplier'?"

    def test_an_unknown_top_level_key(self) -> None:
        problem = one_problem(MINIMAL + "enviroments: {}\n")
        assert (problem.message, problem.hint) == (
            "unknown key 'enviroments'",
            "did you mean 'environments'?",
        )
        assert (problem.line, problem.column) == (7, 1)


class TestWrongTypes:
    @pytest.mark.parametrize(
        ("block", "path", "message"),
        [
            ("approvals: {required: two}", "approvals.required", "expected an integer, got 'two'"),
            ("approvals: {required: 1.5}", "approvals.required", "expected an integer, got 1.5"),
            (
                "approvals: {allow_self_approval: maybe}",
                "approvals.allow_self_approval",
                "expected true or false, got 'maybe'",
            ),
            ("approvals: {approvers: alice}", "approvals.approvers", "expected a list, got 'alice'"),
            ("approvals: [1]", "approvals", "expected a mapping of keys to values, got a list"),
            ("purpose: 5", "purpose", "expected a string, got 5"),
            ("scale: {expected_rps: true}", "scale.expected_rps", "expected an integer, got true"),
        ],
        ids=[
            "word-for-int",
            "float-for-int",
            "word-for-bool",
            "text-for-list",
            "list-for-mapping",
            "int-for-text",
            "bool-for-int",
        ],
    )
    def test_messages_use_plain_words(self, block: str, path: str, message: str) -> None:
        problem = one_problem(with_environment(block))
        assert problem.path == f"environments.production.{path}"
        assert problem.message == message

    def test_a_number_where_text_belongs_suggests_quotes(self) -> None:
        assert one_problem(with_environment("owner: 42")).hint == "put it in quotes: '42'"

    def test_a_single_word_where_a_list_belongs_suggests_the_list(self) -> None:
        problem = one_problem(with_environment("access: {deploy: developer}"))
        assert problem.hint == "write it as a list: [developer]"

    def test_a_missing_required_key_points_at_its_block(self) -> None:
        problem = one_problem(with_environment("backups: {point_in_time: true}"))
        assert problem.message == "missing required key 'every'"
        assert problem.path == "environments.production.backups.every"
        assert (problem.line, problem.column) == (7, 5)

    def test_a_number_out_of_bounds(self) -> None:
        problem = one_problem(with_environment("approvals: {required: -1}"))
        assert problem.message == "must be at least 0, got -1"


class TestTiers:
    def test_unknown_tier_suggests_the_closest(self) -> None:
        problem = one_problem(with_environment("", tier="prod"))
        assert problem.render() == (
            "conveyor.yaml:6:11: environments.production.tier: "
            "unknown tier 'prod' — did you mean 'production'?"
        )

    def test_a_tier_like_nothing_lists_the_tiers(self) -> None:
        problem = one_problem(with_environment("", tier="banana"))
        assert problem.hint == "choose one of: development, testing, staging, production, dr, preview"

    def test_a_missing_tier(self) -> None:
        problem = one_problem("project: demo\nenvironments:\n  development: {purpose: x}\n")
        assert (problem.path, problem.message) == (
            "environments.development.tier",
            "missing required key 'tier'",
        )
        assert (problem.line, problem.column) == (3, 3)


class TestNames:
    def test_environment_names_are_lowercase_words(self) -> None:
        problem = one_problem("project: demo\nenvironments:\n  Prod_1: {tier: production}\n")
        assert problem.message == "'Prod_1' is not a valid environment name"
        assert problem.hint == (
            "use lowercase letters, digits and dashes, starting with a letter, at most 40 characters"
        )
        assert (problem.line, problem.column) == (3, 3)

    def test_project_name(self) -> None:
        problem = one_problem(MINIMAL.replace("project: demo", "project: My App"))
        assert (problem.path, problem.message) == ("project", "'My App' is not a valid project name")

    def test_duplicate_environment_names_are_reported_where_they_repeat(self) -> None:
        text = MINIMAL + "  development:\n    tier: development\n"
        problem = one_problem(text)
        assert problem.message == "duplicate key 'development'"
        assert problem.hint == "'development' is already set at line 3; keep only one"
        assert (problem.path, problem.line, problem.column) == ("environments.development", 7, 3)

    def test_every_duplicate_key_is_reported(self) -> None:
        found = problems(
            with_environment(
                """
                owner: a
                owner: b
                config: {A: 1, A: 2}
                """
            )
        )
        assert [(p.path, p.line) for p in found] == [
            ("environments.production.owner", 8),
            ("environments.production.config.A", 9),
        ]

    def test_no_environments(self) -> None:
        problem = one_problem("project: demo\nenvironments: {}\n")
        assert (problem.path, problem.message) == ("environments", "needs at least 1 entry")

    def test_config_names_become_environment_variables(self) -> None:
        problem = one_problem(with_environment("config: {log-level: debug}"))
        assert problem.message == "'log-level' is not a valid config name"


class TestPipeline:
    def test_a_stage_that_is_not_an_environment(self) -> None:
        problem = one_problem(
            yaml(
                """
                project: demo
                environments:
                  staging: {tier: staging}
                  production: {tier: production}
                pipeline:
                  stages: [stagin, production]
                """
            )
        )
        assert problem.render() == (
            "conveyor.yaml:6:12: pipeline.stages[0]: pipeline stage 'stagin' is not an environment"
            " — did you mean 'staging'?"
        )

    def test_the_default_pipeline_is_the_file_order_without_previews(self) -> None:
        spec = load(
            """
            project: demo
            environments:
              development: {tier: development}
              pr: {tier: preview, ttl: 3d}
              staging: {tier: staging}
              production: {tier: production}
            """
        )
        assert spec.pipeline_order() == ["development", "staging", "production"]

    def test_an_environment_left_out_of_the_pipeline(self) -> None:
        problem = one_problem(MINIMAL + "pipeline: {stages: [production]}\n")
        assert problem.message == "environment 'development' is not in the pipeline"
        assert (problem.line, problem.column) == (3, 3)

    def test_a_stage_listed_twice(self) -> None:
        problem = one_problem(MINIMAL + "pipeline: {stages: [development, production, production]}\n")
        assert (problem.path, problem.message) == (
            "pipeline.stages[2]",
            "environment 'production' appears twice in the pipeline",
        )

    def test_tiers_never_go_backwards(self) -> None:
        problem = one_problem(MINIMAL + "pipeline: {stages: [production, development]}\n")
        assert problem.message == "stage 'development' (development) comes after 'production' (production)"

    def test_a_preview_is_not_a_stage(self) -> None:
        text = (
            with_environment("ttl: 1d", name="pr", tier="preview") + "pipeline: {stages: [development, pr]}\n"
        )
        problem = one_problem(text)
        assert problem.message == "'pr' is a preview environment, not a pipeline stage"

    def test_the_first_stage_has_no_previous_stage(self) -> None:
        problem = one_problem(
            with_environment(
                "promotion: {gates: [{type: previous-stage}]}", name="development", tier="development"
            )
        )
        assert problem.path == "environments.development.promotion.gates[0]"
        assert problem.message == "'development' is the first pipeline stage, so it has no previous stage"

    def test_optional_stages(self) -> None:
        spec = load(
            MINIMAL
            + "pipeline:\n  stages:\n    - {environment: development, optional: true}\n    - production\n"
        )
        assert [(s.environment, s.optional) for s in spec.pipeline.stages] == [
            ("development", True),
            ("production", False),
        ]
        assert spec.previous_stage("production") == "development"
        assert spec.previous_stage("development") is None


class TestRoles:
    def test_an_unknown_role_in_access(self) -> None:
        problem = one_problem(with_environment("access: {deploy: [developer, release-manger]}"))
        assert problem.path == "environments.production.access.deploy[1]"
        assert (problem.message, problem.hint) == (
            "unknown role 'release-manger'",
            "did you mean 'release-manager'?",
        )
        assert (problem.line, problem.column) == (7, 34)

    def test_an_unknown_approver_role(self) -> None:
        problem = one_problem(with_environment("approvals: {required: 1, approver_roles: [boss]}"))
        assert problem.path == "environments.production.approvals.approver_roles[0]"
        assert problem.message == "unknown role 'boss'"
        assert problem.hint == (
            "known roles: admin, developer, qa, release-manager, viewer (declare new ones under `roles:`)"
        )

    def test_roles_declared_in_the_file_may_be_used(self) -> None:
        spec = load(
            "roles:\n  auditor: [audit:read, audit:verify]\n"
            + with_environment("approvals: {required: 1, approver_roles: [auditor]}")
        )
        assert spec.role_table()["auditor"] == frozenset({"audit:read", "audit:verify"})
        assert spec.environments["production"].access.approve == ["auditor"]

    def test_built_in_roles_can_be_redefined_but_admin_cannot(self) -> None:
        spec = load(MINIMAL + "roles:\n  qa: {description: testers, permissions: [status:read]}\n")
        assert spec.role_table()["qa"] == frozenset({"status:read"})
        problem = one_problem(MINIMAL + "roles:\n  admin: [status:read]\n")
        assert (problem.path, problem.message) == ("roles.admin", "the admin role cannot be changed")

    def test_access_has_one_key_per_environment_action(self) -> None:
        assert list(Access.model_fields) == list(ENVIRONMENT_ACTIONS)
        spec = load(with_environment("access: {rollout: [qa]}"))
        assert spec.environments["production"].access.roles_for("rollout") == ("qa",)

    def test_unknown_permissions(self) -> None:
        problem = one_problem(MINIMAL + "roles:\n  auditor: [audit:raed]\n")
        assert (problem.message, problem.hint) == (
            "unknown permission 'audit:raed'",
            "did you mean 'audit:read'?",
        )

    def test_approver_roles_and_access_approve_stay_equal(self) -> None:
        spec = load(with_environment("access: {approve: [release-manager]}\napprovals: {required: 1}"))
        assert spec.environments["production"].approvals.approver_roles == ["release-manager"]
        problem = one_problem(
            with_environment(
                "access: {approve: [qa]}\napprovals: {required: 1, approver_roles: [release-manager]}"
            )
        )
        assert problem.message == "access.approve and approvals.approver_roles list different roles"


class TestApprovals:
    def test_more_approvals_than_named_approvers(self) -> None:
        problem = one_problem(with_environment("approvals: {required: 3, approvers: [alice, bob]}"))
        assert problem.path == "environments.production.approvals.required"
        assert problem.message == "3 approvals required but only 2 approvers listed"
        assert problem.hint == "list more approvers, add approver_roles, or lower approvals.required"

    def test_the_requester_cannot_be_one_of_the_needed_approvers(self) -> None:
        problem = one_problem(with_environment("approvals: {required: 2, approvers: [alice, bob]}"))
        assert problem.message == (
            "2 approvals required but only 2 approvers listed, "
            "and whoever requests a promotion cannot approve it"
        )

    def test_enough_approvers_or_self_approval_allowed(self) -> None:
        load(with_environment("approvals: {required: 2, approvers: [alice, bob, carol]}"))
        load(with_environment("approvals: {required: 2, approvers: [alice, bob], allow_self_approval: true}"))

    def test_roles_can_always_supply_reviewers(self) -> None:
        load(with_environment("approvals: {required: 5, approver_roles: [release-manager]}"))

    def test_approvals_need_someone_to_give_them(self) -> None:
        problem = one_problem(with_environment("approvals: {required: 1}"))
        assert problem.message == "1 approval required but no approvers or approver_roles listed"

    def test_an_approver_listed_twice(self) -> None:
        problem = one_problem(with_environment("approvals: {required: 1, approvers: [alice, bob, alice]}"))
        assert (problem.path, problem.message) == (
            "environments.production.approvals.approvers[2]",
            "approver 'alice' is listed twice",
        )

    def test_approvers_may_come_from_access_approve(self) -> None:
        load(with_environment("access: {approve: [release-manager]}\napprovals: {required: 2}"))


class TestDurations:
    @pytest.mark.parametrize("text", ["5 minutes", "five", "-5m", "5min", "1.5h", "m5"])
    def test_bad_durations_show_how_to_write_one(self, text: str) -> None:
        problem = one_problem(with_environment(f"approvals: {{expires_after: '{text}'}}"))
        assert problem.message == f"'{text}' is not a duration"
        assert problem.hint == "write it like 5m, 1h30m or 7d"
        assert problem.render().endswith(f"'{text}' is not a duration — write it like 5m, 1h30m or 7d")

    def test_a_bare_number_needs_a_unit(self) -> None:
        problem = one_problem(with_environment("approvals: {expires_after: 5}"))
        assert (problem.message, problem.hint) == ("5 is not a duration", "add a unit, like 5s, 5m or 5h")

    def test_units_go_from_largest_to_smallest(self) -> None:
        problem = one_problem(with_environment("approvals: {expires_after: 30m1h}"))
        assert problem.hint == "write units from largest to smallest, each once, like 1h30m"


class TestPercentSizeMoney:
    @pytest.mark.parametrize(
        ("value", "message", "hint"),
        [
            ("101%", "'101%' is more than 100%", "a percentage is between 0% and 100%"),
            ("1", "1 is not a percentage", "add a % sign: 1%"),
            ("abc", "'abc' is not a percentage", "write it like 1%, 12.5% or 99.9%"),
        ],
        ids=["over-100", "no-sign", "word"],
    )
    def test_bad_percentages(self, value: str, message: str, hint: str) -> None:
        problem = one_problem(with_environment(f"uptime_sla: {value}"))
        assert (problem.path, problem.message, problem.hint) == (
            "environments.production.uptime_sla",
            message,
            hint,
        )

    def test_bad_size(self) -> None:
        problem = one_problem(with_environment("logs: {retention: 7d, size: 10 gigs}"))
        assert (problem.message, problem.hint) == (
            "'10 gigs' is not a size",
            "write it like 512MB, 2GB or 1TB",
        )

    def test_bad_money(self) -> None:
        problem = one_problem(with_environment("budget: {monthly: 300 dollars}"))
        assert (problem.message, problem.hint) == (
            "'300 dollars' is not an amount of money",
            "write an amount in dollars like 300 or $300",
        )


class TestStrategy:
    def test_weights_must_increase(self) -> None:
        problem = one_problem(
            with_environment("strategy: {type: bluegreen, steps: [{weight: 10%}, {weight: 5%}]}")
        )
        assert problem.path == "environments.production.strategy.steps[1].weight"
        assert problem.message == "step weights must increase, but 5% comes after 10%"

    def test_a_zero_weight(self) -> None:
        problem = one_problem(with_environment("strategy: {type: canary, steps: [{weight: 0%}]}"))
        assert problem.message == "a step must send more than 0% of traffic"

    def test_the_final_100_percent_step_is_implied(self) -> None:
        spec = load(with_environment("strategy: {type: canary, steps: [{weight: 5%, pause: 5m}]}"))
        steps = spec.environments["production"].strategy.steps
        assert [(str(s.weight), str(s.pause)) for s in steps] == [("5%", "5m"), ("100%", "None")]

    def test_recreate_has_no_steps(self) -> None:
        problem = one_problem(with_environment("strategy: {type: recreate, steps: [{weight: 50%}]}"))
        assert problem.path == "environments.production.strategy.steps"
        assert (problem.message, problem.hint) == (
            "a recreate strategy has no traffic steps",
            "use type: bluegreen or canary to shift traffic in steps, or remove steps",
        )

    def test_pauses_are_durations(self) -> None:
        problem = one_problem(
            with_environment("strategy: {type: bluegreen, steps: [{weight: 1%, pause: soon}]}")
        )
        assert problem.path == "environments.production.strategy.steps[0].pause"
        assert problem.message == "'soon' is not a duration"

    def test_unknown_strategy(self) -> None:
        problem = one_problem(with_environment("strategy: {type: bluegren}"))
        assert (problem.message, problem.hint) == ("unknown type 'bluegren'", "did you mean 'bluegreen'?")

    def test_sticky_routing_is_for_canaries(self) -> None:
        problem = one_problem(with_environment("strategy: {type: bluegreen, sticky: {header: X-Canary}}"))
        assert problem.message == "sticky routing needs type: canary, not bluegreen"

    def test_analysis_on_slos_needs_slos(self) -> None:
        problem = one_problem(with_environment("strategy: {type: bluegreen, analysis: {use_slos: true}}"))
        assert problem.path == "environments.production.strategy.analysis.use_slos"
        assert problem.message == "analysis uses the SLOs, but this environment sets none"


class TestSecrets:
    def test_a_value_under_a_secret(self) -> None:
        problem = one_problem(with_environment("secrets: {API_KEY: {kind: api-key, value: abc123}}"))
        assert problem.path == "environments.production.secrets.API_KEY.value"
        assert problem.message == "a secret's value never goes in conveyor.yaml"
        assert (
            problem.hint
            == "declare only kind and rotate_every here; store the value with `conveyor secret set`"
        )
        assert (problem.line, problem.column) == (7, 40)

    def test_a_secret_written_as_its_value(self) -> None:
        problem = one_problem(with_environment("secrets: {JWT_SECRET: dev-signing-key}"))
        assert problem.message == "secrets are references, not values: this looks like the secret itself"

    def test_a_bare_reference(self) -> None:
        spec = load(with_environment("secrets:\n  API_KEY:\n"))
        assert spec.environments["production"].secrets["API_KEY"].kind == "generic"

    def test_services_need_their_secrets_declared(self) -> None:
        text = "services:\n  web: {command: app, secrets: [API_KEY]}\n" + with_environment(
            "secrets: {API_KEY: {kind: api-key}}"
        )
        problem = one_problem(text)
        assert problem.path == "environments.development.secrets"
        assert problem.message == "service 'web' needs secret 'API_KEY', which is not declared here"


class TestConfig:
    def test_nested_mappings_are_rejected(self) -> None:
        problem = one_problem(with_environment("config: {DB: {POOL: 5}}"))
        assert problem.path == "environments.production.config.DB"
        assert problem.message == "config values must be a string, number or true/false, not a mapping"

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("[a, b]", "config values must be a string, number or true/false, not a list"),
            ("null", "a config value cannot be empty (null)"),
        ],
        ids=["list", "null"],
    )
    def test_only_scalars(self, value: str, message: str) -> None:
        assert one_problem(with_environment(f"config: {{X: {value}}}")).message == message

    def test_scalars_keep_their_type(self) -> None:
        spec = load(with_environment("config: {A: text, B: 5, C: 0.5, D: true}"))
        assert spec.environments["production"].config == {"A": "text", "B": 5, "C": 0.5, "D": True}

    def test_values_must_fit_the_service_schema(self) -> None:
        text = (
            "services:\n  web:\n    command: app\n"
            "    config_schema:\n"
            "      DB_POOL_SIZE: {type: integer, default: 5}\n"
            "      LOG_LEVEL: {choices: [debug, info]}\n"
        ) + with_environment("config: {DB_POOL_SIZE: many, LOG_LEVEL: loud}")
        found = problems(text)
        assert [(p.path, p.message, p.hint) for p in found] == [
            (
                "environments.production.config.DB_POOL_SIZE",
                "expected an integer, got 'many'",
                "service 'web' declares DB_POOL_SIZE as integer",
            ),
            (
                "environments.production.config.LOG_LEVEL",
                "'loud' is not one of debug, info",
                "service 'web' declares LOG_LEVEL as string",
            ),
        ]

    def test_a_default_must_fit_its_type(self) -> None:
        problem = one_problem(
            "services:\n  web:\n    command: app\n"
            "    config_schema: {API_TIMEOUT: {type: duration, default: soon}}\n" + MINIMAL
        )
        assert problem.path == "services.web.config_schema.API_TIMEOUT.default"
        assert problem.message == "expected a duration, got 'soon'"


class TestRouterPorts:
    def test_ports_are_unique(self) -> None:
        text = yaml(
            """
            project: demo
            environments:
              development: {tier: development, router: {port: 8101}}
              production: {tier: production, router: {port: 8101}}
            """
        )
        problem = one_problem(text)
        assert problem.path == "environments.production.router.port"
        assert problem.message == "router port 8101 is already used by environment 'development'"
        assert (problem.line, problem.column) == (4, 49)

    @pytest.mark.parametrize(
        ("port", "message"), [(0, "must be at least 1, got 0"), (70000, "must be at most 65535, got 70000")]
    )
    def test_ports_are_in_range(self, port: int, message: str) -> None:
        assert one_problem(with_environment(f"router: {{port: {port}}}")).message == message


class TestGates:
    def test_unknown_gate_type(self) -> None:
        problem = one_problem(with_environment("promotion: {gates: [{type: lod}]}"))
        assert (problem.path, problem.message, problem.hint) == (
            "environments.production.promotion.gates[0]",
            "unknown gate type 'lod'",
            "did you mean 'load'?",
        )

    def test_a_gate_without_a_type(self) -> None:
        problem = one_problem(with_environment("promotion: {gates: [{run: make test}]}"))
        assert problem.message == "missing required key 'type'"
        assert problem.hint is not None and problem.hint.startswith(
            "choose one of: command, previous-stage, scan"
        )

    def test_two_gates_with_one_name(self) -> None:
        problem = one_problem(
            with_environment("promotion: {gates: [{type: command, run: a}, {type: command, run: b}]}")
        )
        assert problem.path == "environments.production.promotion.gates[1].name"
        assert problem.message == "two gates are named 'command'"

    def test_load_gates_need_expected_traffic_and_slos(self) -> None:
        found = problems(with_environment("promotion: {gates: [{type: load, multiplier: 2}]}"))
        assert [p.message for p in found] == [
            "a load gate needs scale.expected_rps",
            "a load gate needs slos to judge the result",
        ]

    def test_window_gates_need_windows(self) -> None:
        problem = one_problem(with_environment("promotion: {gates: [{type: window}]}"))
        assert problem.message == "a window gate needs a windows block"

    def test_a_branch_without_automatic_promotion(self) -> None:
        problem = one_problem(with_environment("promotion: {branch: main}"))
        assert problem.message == "branch 'main' only applies to automatic promotion"

    def test_unknown_chaos_experiment(self) -> None:
        problem = one_problem(
            with_environment(
                "slos: {availability: 99%}\npromotion: {gates: [{type: chaos, experiments: [{kind: kil}]}]}"
            )
        )
        assert problem.message == "unknown experiment kind 'kil'"


class TestEnvironmentPolicies:
    def test_real_data_outside_production(self) -> None:
        problem = one_problem(with_environment("data: {policy: real}", name="staging", tier="staging"))
        assert problem.path == "environments.staging.data.policy"
        assert problem.message == "real customer data is not allowed in a staging environment"

    def test_masked_data_needs_a_source(self) -> None:
        problem = one_problem(with_environment("data: {policy: masked}", name="staging", tier="staging"))
        assert problem.message == "masked data needs a source environment"

    def test_a_data_source_must_exist(self) -> None:
        problem = one_problem(
            with_environment("data: {policy: masked, source: prodution}", name="staging", tier="staging")
        )
        assert (problem.message, problem.hint) == (
            "data source 'prodution' is not an environment",
            "environments are: development, staging",
        )

    def test_production_never_expires(self) -> None:
        problem = one_problem(with_environment("ttl: 7d"))
        assert problem.message == "a production environment cannot expire"

    def test_previews_must_expire(self) -> None:
        problem = one_problem(with_environment("", name="pr", tier="preview"))
        assert problem.message == "a preview environment needs ttl or idle_ttl"

    def test_rpo_needs_frequent_enough_backups(self) -> None:
        problem = one_problem(
            with_environment("backups: {every: 24h}\nrecovery: {method: restore-backup, rpo: 5m}")
        )
        assert problem.message == "an RPO of 5m cannot be met with backups every 1d"

    def test_failover_needs_a_target(self) -> None:
        problem = one_problem(with_environment("recovery: {method: failover}"))
        assert problem.message == "failover needs a target environment"

    def test_autoscaling_must_contain_the_normal_range(self) -> None:
        problem = one_problem(
            with_environment("scale: {instances: {min: 4, max: 6}, autoscale: {min: 5, max: 20}}")
        )
        assert problem.message == "autoscale 5-20 does not contain instances 4-6"

    def test_instances_shorthand(self) -> None:
        spec = load(with_environment("scale: {instances: 3}"))
        assert spec.environments["production"].scale.instances.min == 3
        problem = one_problem(with_environment("scale: {instances: two}"))
        assert problem.message == "expected a number of instances or a min and max, got 'two'"

    def test_slo_below_the_sla(self) -> None:
        problem = one_problem(with_environment("uptime_sla: 99.9%\nslos: {availability: 99%}"))
        assert problem.message == "the availability objective 99% is below the uptime SLA 99.9%"

    def test_windows(self) -> None:
        spec = load(
            with_environment(
                """
                windows:
                  timezone: Europe/Berlin
                  allow: [{days: [mon], start: "9:00", end: "16:00"}]
                  freezes: [{name: year-end, start: 2025-12-20, end: 2026-01-04}]
                """
            )
        )
        windows = spec.environments["production"].windows
        assert windows is not None and windows.allow[0].start == "09:00"
        assert str(windows.freezes[0].end) == "2026-01-04"

    def test_bad_windows(self) -> None:
        found = problems(
            with_environment(
                """
                windows:
                  timezone: Europe/Berln
                  allow: [{days: [monday], start: "25:00", end: "16:00"}]
                  freezes: [{name: x, start: 2026-01-04, end: 2025-12-20}]
                """
            )
        )
        assert [(p.message, p.hint) for p in found] == [
            ("unknown timezone 'Europe/Berln'", "did you mean 'Europe/Berlin'?"),
            ("unknown day 'monday'", "did you mean 'mon'?"),
            ("'25:00' is not a time of day", 'write it as HH:MM in 24-hour time, like "09:00"'),
            ("freeze ends on 2025-12-20 before it starts on 2026-01-04", "swap start and end"),
        ]


class TestServices:
    def test_a_service_needs_a_way_to_start(self) -> None:
        problem = one_problem("services:\n  web: {port_env: PORT}\n" + MINIMAL)
        assert (problem.path, problem.message) == (
            "services.web.command",
            "a service needs a command or an image",
        )

    def test_commands_are_split_like_a_shell_would(self) -> None:
        spec = load("services:\n  web: {command: \"python -m app --name 'a b'\"}\n" + MINIMAL)
        assert spec.services["web"].command == ["python", "-m", "app", "--name", "a b"]
        assert spec.services["web"].name == "web"

    def test_health_timeout_shorter_than_interval(self) -> None:
        problem = one_problem(
            "services:\n  web: {command: app, health: {interval: 5s, timeout: 5s}}\n" + MINIMAL
        )
        assert problem.message == "timeout 5s is not shorter than interval 5s"

    def test_health_path_is_a_path(self) -> None:
        problem = one_problem("services:\n  web: {command: app, health: {path: healthz}}\n" + MINIMAL)
        assert (problem.message, problem.hint) == (
            "'healthz' is not a URL path",
            "start it with a slash: /healthz",
        )


class TestManyProblemsAtOnce:
    def test_every_problem_is_reported_in_file_order(self) -> None:
        found = problems(
            yaml(
                """
                project: demo
                environments:
                  development:
                    tier: develoment
                    aprovals: {}
                  production:
                    tier: production
                    purpose: [live]
                    access: {deploy: [release-manger]}
                    strategy: {type: bluegreen, steps: [{weight: 1%, pause: 5 minutes}]}
                    secrets: {API_KEY: {value: x}}
                pipeline:
                  stages: [development, prodution]
                """
            )
        )
        assert [(p.line, p.path) for p in found] == [
            (4, "environments.development.tier"),
            (5, "environments.development.aprovals"),
            (8, "environments.production.purpose"),
            (9, "environments.production.access.deploy[0]"),
            (10, "environments.production.strategy.steps[0].pause"),
            (11, "environments.production.secrets.API_KEY.value"),
            (13, "pipeline.stages[1]"),
        ]
        assert all(p.file == "conveyor.yaml" and p.column for p in found)

    def test_checks_across_blocks_run_per_environment(self) -> None:
        found = problems(
            yaml(
                """
                project: demo
                environments:
                  development:
                    tier: development
                    owner: [me]
                  production:
                    tier: production
                    approvals: {required: 3, approvers: [alice, bob]}
                """
            )
        )
        assert [p.message for p in found] == [
            "expected a string, got a list",
            "3 approvals required but only 2 approvers listed",
        ]
