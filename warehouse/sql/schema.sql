-- The warehouse's tables. Column contracts: warehouse/contracts.py (checked by a test).
create table if not exists students (
    ra varchar not null,
    year integer not null,
    fase integer,
    turma varchar,
    idade integer,
    ano_nasc integer,
    data_nasc date,
    genero varchar,
    ano_ingresso integer,
    instituicao varchar,
    instituicao_raw varchar,
    escola varchar,
    defasagem integer,
    fase_ideal integer,
    iaa double,
    ieg double,
    ips double,
    ipp double,
    ida double,
    ipv double,
    ian double,
    inde double,
    pedra varchar,
    mat double,
    por double,
    ing double,
    cg integer,
    cf integer,
    ct integer,
    n_av integer,
    rec_av1 varchar,
    rec_av2 varchar,
    rec_av3 varchar,
    rec_av4 varchar,
    rec_psicologia varchar,
    indicado varchar,
    atingiu_pv varchar,
    destaque_ieg varchar,
    destaque_ida varchar,
    destaque_ipv varchar,
    ativo varchar,
    source varchar not null,
    primary key (ra, year)
);

create table if not exists ingest_runs (
    run_id varchar not null,
    source varchar not null,
    sha256 varchar not null,
    year integer,
    status varchar not null,          -- loaded | unchanged | skipped | failed
    rows_read integer not null,
    rows_loaded integer not null,
    rows_quarantined integer not null,
    dq_issues integer not null,
    note varchar,
    started_at timestamp not null,
    finished_at timestamp not null
);

create table if not exists quarantine (
    run_id varchar not null,
    source varchar not null,
    year integer,
    line integer not null,
    reason varchar not null,
    raw varchar
);

create table if not exists data_quality (
    run_id varchar not null,
    source varchar not null,
    year integer not null,
    line integer not null,
    "column" varchar not null,
    raw varchar,
    problem varchar not null
);

create table if not exists model_registry (
    version varchar primary key,
    task varchar not null,
    created_at timestamp,
    kind varchar,
    accepted boolean,
    is_champion boolean,
    test_recall double,
    test_precision double,
    test_roc_auc double,
    protocol varchar,
    training_data_sha256 varchar,
    code_version varchar
);

create table if not exists risk_scores (
    ra varchar not null,
    year integer not null,
    task varchar not null,
    model_version varchar not null,
    risk_score double,  -- null when no validated variant could score the row (risk_label unknown)
    risk_label varchar not null,
    rank integer not null,
    reasons varchar,
    scored_at timestamp not null,
    variant varchar,  -- the served variant that answered; null when none could (risk_label unknown)
    segment varchar,  -- whose operating point labelled the row: behind, on_track, or null (single threshold)
    primary key (ra, year, task)
);
-- A risk_scores table made without variant and segment gets them here, at the end as above, so a
-- warehouse opened for writing has the same columns in the same order however old its file is.
alter table risk_scores add column if not exists variant varchar;
alter table risk_scores add column if not exists segment varchar;

-- The online prediction log, loaded from $PASSOS_HOME/predictions/*.jsonl (append-only files).
create table if not exists predictions (
    file varchar not null,
    line integer not null,
    ts timestamp,
    request_id varchar,
    endpoint varchar,
    task varchar,
    model_version varchar,
    latency_ms double,
    inputs json,
    risk_score double,
    risk_label varchar,
    student_hash varchar,
    error varchar,
    primary key (file, line)
);

create table if not exists drift_reports (
    run_id varchar primary key,
    created_at timestamp not null,
    task varchar not null,
    model_version varchar,
    reference varchar not null,
    "current" varchar not null,
    reference_rows integer,
    current_rows integer,
    share_drifted double,
    drifted_columns varchar,
    score_psi double,
    recall double,
    "precision" double,
    roc_auc double,
    verdict varchar not null,
    reasons varchar,
    report_path varchar
);
