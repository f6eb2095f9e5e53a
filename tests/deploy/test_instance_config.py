"""The shipped instance config is valid for Dagster 1.13 / dagster-aws 0.29 as written: the
instance schema, every configurable class's own schema (queued coordinator, S3 compute logs,
default and ECS run launchers, the retrying Postgres storage), with the `env:` values resolved; and the pool
limits the stages declare are exactly the pools `amr-dagster pools` sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from amr_dagster.pools import FIXED, POOLS, pool_limits

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENV = {
    "DAGSTER_PG_HOST": "db.internal", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "x",
    "DAGSTER_PG_DB": "dagster", "AMR_COMPUTE_LOG_BUCKET": "logs", "AMR_COMPUTE_LOG_PREFIX": "compute-logs",
    "AMR_ECS_TASK_DEFINITION": "arn:aws:ecs:us-east-1:123456789012:task-definition/amr-run:1",
    "AMR_ECS_PG_PASSWORD_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:pg",
    "AMR_ECS_LLM_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:llm",
}


def _check(config: dict, home: Path) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import class_from_code_pointer
    from resources.instance_storage import RetryingPostgresStorage

    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    dagster_instance_config(str(home))  # the instance schema (raises DagsterInvalidConfigError)
    for block in ("run_coordinator", "run_launcher", "compute_logs"):
        klass = class_from_code_pointer(config[block]["module"], config[block]["class"])
        result = process_config(klass.config_type(), config[block].get("config", {}))
        assert result.success, (block, result.errors)
    storage = config["storage"]["custom"]
    assert class_from_code_pointer(storage["module"], storage["class"]) is RetryingPostgresStorage
    result = process_config(RetryingPostgresStorage.config_type(), storage["config"])
    assert result.success, result.errors
    assert result.value["postgres_db"]["port"] == 5432


def test_deploy_instance_config_is_valid(tmp_path, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    _check(config, tmp_path)
    assert config["concurrency"]["pools"]["default_limit"] == 1
    monkeypatch.delenv("DAGSTER_PG_HOST")  # a missing setting is an error naming it, not a default
    from dagster._config import process_config

    from resources.instance_storage import RetryingPostgresStorage

    result = process_config(RetryingPostgresStorage.config_type(), config["storage"]["custom"]["config"])
    assert not result.success and "DAGSTER_PG_HOST" in str(result.errors)


def test_ecs_launcher_replaces_the_default_one(tmp_path, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    config["run_launcher"] = yaml.safe_load((DEPLOY / "run_launcher.ecs.yaml").read_text())["run_launcher"]
    config["run_monitoring"]["max_resume_run_attempts"] = 3
    _check(config, tmp_path)


def test_every_declared_pool_has_a_limit():
    from amr_dagster.definitions import defs

    pools = {a.key.to_user_string(): a.op.pool for a in defs.assets if hasattr(a, "op")}
    assert set(filter(None, pools.values())) <= set(POOLS), pools
    # the two writers of ordered shared state are serialized
    assert pools["deduped_seeds"] == "minhash_dedup" and pools["module_library"] == "module_library"
    assert pools["evolved_responses"] == "llm_teacher" and pools["executed_responses"] == "sandbox"
    limits = pool_limits(environ={"AMR_POOL_SANDBOX": "8"})
    assert limits["sandbox"] == 8 and limits["minhash_dedup"] == 1 and limits["module_library"] == 1
    assert pool_limits({"llm_teacher": 2}, environ={})["llm_teacher"] == 2
    for bad in ({"minhash_dedup": 2}, {"nope": 1}, {"sandbox": 0}):
        with pytest.raises(ValueError):
            pool_limits(bad, environ={})
    assert set(FIXED) == {"minhash_dedup", "module_library"}
