"""The one place where Python names ontology terms, named graphs and IRI bases.

A test checks that every ``wf:`` term named here is declared in ``ontology/``.
"""

from __future__ import annotations

from pyoxigraph import NamedNode

WF_NS = "https://w3id.org/wayfinder/ontology#"
DPV_NS = "https://w3id.org/dpv#"
PROV_NS = "http://www.w3.org/ns/prov#"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS_NS = "http://www.w3.org/2000/01/rdf-schema#"
XSD_NS = "http://www.w3.org/2001/XMLSchema#"

# Bases of the IRIs the service mints.
BASE = "https://w3id.org/wayfinder/"
USER_BASE = BASE + "user/"
EVENT_BASE = BASE + "event/"
CONSENT_BASE = BASE + "consent/"
DECISION_BASE = BASE + "decision/"
ERASURE_BASE = BASE + "erasure/"
PURGE_BASE = BASE + "purge/"
MODEL_BASE = BASE + "model/"
TRAINING_BASE = BASE + "training/"
GRAPH_BASE = BASE + "graph/"
RECEIPT_BASE = BASE + "receipt/"
EXPERIMENT_BASE = BASE + "experiment/"
EXPERIMENT_CHANGE_BASE = BASE + "experiment-change/"
ASSIGNMENT_BASE = BASE + "assignment/"
ANALYSIS_BASE = BASE + "analysis/"
FLAG_BASE = BASE + "flag/"
FLAG_CHANGE_BASE = BASE + "flag-change/"
FLAG_REQUEST_BASE = BASE + "flag-request/"
APPROVAL_BASE = BASE + "approval/"
KNOWLEDGE_VERSION_BASE = BASE + "knowledge-version/"
OFFLINE_EVALUATION_BASE = BASE + "offline-evaluation/"
HEALTH_REPORT_BASE = BASE + "health-report/"
FAIRNESS_REPORT_BASE = BASE + "fairness-report/"
IMPACT_ASSESSMENT_BASE = BASE + "impact-assessment/"
DELIVERY_BASE = BASE + "delivery/"
LEASE_BASE = BASE + "lease/"


def wf(name: str) -> NamedNode:
    return NamedNode(WF_NS + name)


def dpv(name: str) -> NamedNode:
    return NamedNode(DPV_NS + name)


def prov(name: str) -> NamedNode:
    return NamedNode(PROV_NS + name)


RDF_TYPE = NamedNode(RDF_NS + "type")
RDFS_LABEL = NamedNode(RDFS_NS + "label")
XSD_DATETIME = NamedNode(XSD_NS + "dateTime")
XSD_INTEGER = NamedNode(XSD_NS + "integer")
XSD_DOUBLE = NamedNode(XSD_NS + "double")
XSD_BOOLEAN = NamedNode(XSD_NS + "boolean")
XSD_STRING = NamedNode(XSD_NS + "string")
XSD_BASE64 = NamedNode(XSD_NS + "base64Binary")
XSD_DURATION = NamedNode(XSD_NS + "duration")
RDF_JSON = NamedNode(RDF_NS + "JSON")

LEASE_HOLDER = wf("leaseHolder")

# Feedback and sentiment
FEEDBACK_PURPOSE = wf("FeedbackPurpose")
FEEDBACK_GIVEN = wf("FeedbackGiven")
THUMBS_UP = wf("thumbsUp")
RATING = wf("rating")
FEEDBACK_TEXT = wf("feedbackText")
SENTIMENT = wf("sentiment")
SENTIMENT_SCORER = wf("sentimentScorer")
FEEDBACK_PRESSURE = wf("feedbackPressure")

# Catalog (CONTRACT.md section 1)
STEP = wf("Step")
FEATURE = wf("Feature")
ROLE = wf("Role")
INDUSTRY = wf("Industry")
PLAN = wf("Plan")
CHANNEL = wf("Channel")
WEB, MOBILE, IN_APP, EMAIL = wf("Web"), wf("Mobile"), wf("InApp"), wf("Email")
REQUIRES = wf("requires")
INTRODUCES = wf("introduces")
PART_OF = wf("partOf")
FOR_ROLE = wf("forRole")
REQUIRES_PLAN = wf("requiresPlan")
INCLUDES_PLAN = wf("includesPlan")
AVAILABLE_ON = wf("availableOn")
DEFAULT_ORDER = wf("defaultOrder")

# Users
USER = wf("User")
HAS_ROLE = wf("hasRole")
HAS_INDUSTRY = wf("hasIndustry")
HAS_PLAN = wf("hasPlan")
SIGNUP_CHANNEL = wf("signupChannel")
REGISTERED_AT = wf("registeredAt")
PSEUDONYM = wf("pseudonym")
HAS_PROTECTED_GROUP = wf("hasProtectedGroup")  # collected for FAIRNESS only; ranking never reads it

# Consent
CONSENT_PURPOSE = wf("ConsentPurpose")
PERSONALIZATION = wf("Personalization")
ANALYTICS = wf("Analytics")
MARKETING = wf("Marketing")
FAIRNESS_MONITORING = wf("FairnessMonitoring")
PURPOSE_CODE = wf("purposeCode")
COLLECTED_FOR = wf("collectedFor")
CONSENT_RECORD = dpv("ConsentRecord")
HAS_DATA_SUBJECT = dpv("hasDataSubject")
HAS_PURPOSE = dpv("hasPurpose")
HAS_CONSENT_STATUS = dpv("hasConsentStatus")
HAS_LEGAL_BASIS = dpv("hasLegalBasis")
IS_INDICATED_AT_TIME = dpv("isIndicatedAtTime")
RECORDED_AT = wf("recordedAt")
CONSENT_GIVEN = dpv("ConsentGiven")
CONSENT_WITHDRAWN = dpv("ConsentWithdrawn")
CONSENT_REFUSED = dpv("ConsentRefused")
CONSENT_LEGAL_BASIS = dpv("Consent")

# Events
EVENT = wf("Event")
STEP_COMPLETED = wf("StepCompleted")
STEP_DISMISSED = wf("StepDismissed")
STEP_SNOOZED = wf("StepSnoozed")
VIA_CHANNEL = wf("viaChannel")
TIME_ZONE = wf("timeZone")
HELD_BACK = wf("heldBack")
PACING = wf("pacing")
PACING_PARTS = (wf("hasFrequencyCap"), wf("hasQuietHours"))
PACED_LIMIT = wf("pacedLimit")
FEATURE_USED = wf("FeatureUsed")
ACTIVATED = wf("Activated")
CONVERTED = wf("Converted")
EVENT_TYPE = wf("eventType")
BY_USER = wf("byUser")
ABOUT_STEP = wf("aboutStep")
ABOUT_FEATURE = wf("aboutFeature")
OCCURRED_AT = wf("occurredAt")

# Policies and models
POLICY = wf("Policy")
POLICY_VERSION = wf("PolicyVersion")
RANKING_RULE = wf("RankingRule")
VERSION_OF = wf("versionOf")
VERSION = wf("version")
STATUS = wf("status")
APPROVED_BY = wf("approvedBy")
APPROVED_AT = wf("approvedAt")
CONTENT_HASH = wf("contentHash")
HAS_RULE = wf("hasRule")
RULE_WEIGHT = wf("ruleWeight")
MODEL_WEIGHT = wf("modelWeight")
DEPTH_WEIGHT = wf("depthWeight")
UNLOCK_WEIGHT = wf("unlockWeight")
AFFINITY_WEIGHT = wf("affinityWeight")
WEIGHT = wf("weight")
WHEN_ROLE = wf("whenRole")
WHEN_INDUSTRY = wf("whenIndustry")
WHEN_PLAN = wf("whenPlan")
WHEN_CHANNEL = wf("whenChannel")
WHEN_USED_FEATURE = wf("whenUsedFeature")
TARGET_FEATURE = wf("targetFeature")
TARGET_STEP = wf("targetStep")
REASON_TEXT = wf("reasonText")
MODEL_VERSION_CLASS = wf("ModelVersion")
TRAINING_RUN = wf("TrainingRun")
HYPER_PARAMETERS = wf("hyperParameters")
METRICS = wf("metrics")
DATA_SNAPSHOT = wf("dataSnapshot")
TRAINING_USERS = wf("trainingUsers")
SUPERSEDES = wf("supersedes")
ARTIFACT = wf("artifact")
# A model version's life cycle (service/models/lifecycle.py)
MODEL_STATUS_CLASS = wf("ModelStatus")
MODEL_STATUS = wf("modelStatus")
CANDIDATE_VERSION = wf("CandidateVersion")
ACTIVE_VERSION = wf("ActiveVersion")
RETIRED_VERSION = wf("RetiredVersion")
ROLLED_BACK_VERSION = wf("RolledBackVersion")
# Model health (service/models/profiles.py, monitoring.py)
TRAINING_PROFILE = wf("trainingProfile")
HEALTH_REPORT = wf("HealthReport")
HEALTH_FIGURES = wf("healthFigures")
HEALTH_ALERT = wf("healthAlert")
HEALTH_VERDICT = wf("healthVerdict")
HEALTH_OCCASION = wf("healthOccasion")

# Experiments and flags (service/experiments/)
KNOWLEDGE_GRAPH = wf("KnowledgeGraph")
EXPERIMENT = wf("Experiment")
VARIANT_CLASS = wf("Variant")
GUARDRAIL = wf("Guardrail")
FEATURE_FLAG = wf("FeatureFlag")
DRAFT_EXPERIMENT = wf("DraftExperiment")
RUNNING_EXPERIMENT = wf("RunningExperiment")
STOPPED_EXPERIMENT = wf("StoppedExperiment")
ACTIVE_ARM = wf("ActiveArm")
ROLLED_BACK_ARM = wf("RolledBackArm")
EXPERIMENT_ID = wf("experimentId")
EXPERIMENT_STATUS = wf("experimentStatus")
HASH_VERSION = wf("hashVersion")
COVERAGE = wf("coverage")
HOLDOUT = wf("holdout")
CREATED_BY = wf("createdBy")
HAS_VARIANT = wf("hasVariant")
ARM_NAME = wf("armName")
ARM_POSITION = wf("armPosition")
SERVED_BY = wf("servedBy")
ALLOCATION = wf("allocation")
ARM_STATUS = wf("armStatus")
HAS_GUARDRAIL = wf("hasGuardrail")
GUARDRAIL_KPI = wf("guardrailKpi")
MAX_RELATIVE_DROP = wf("maxRelativeDrop")
DETECTABLE_DROP = wf("detectableDrop")
EXPERIMENT_CHANGE = wf("ExperimentChange")
ROLLBACK = wf("Rollback")
ANALYSIS_SNAPSHOT = wf("AnalysisSnapshot")
CHANGE_KIND = wf("changeKind")
STATE_AFTER = wf("stateAfter")
APPROVAL = wf("Approval")
APPROVED_CONTENT = wf("approvedContent")
VERDICT = wf("verdict")
APPROVER_ROLE = wf("approverRole")
ANALYSIS = wf("analysis")
ROLLED_BACK_ARM_OF = wf("rolledBackArm")
IN_EXPERIMENT = wf("inExperiment")
ASSIGNED_ARM = wf("assignedArm")
BUCKET = wf("bucket")
ASSIGNMENT_REASON = wf("assignmentReason")
ASSIGNMENT = wf("Assignment")
REVISION = wf("revision")
FLAG_CHANGE = wf("FlagChange")
FLAG_ID = wf("flagId")
PINS_POLICY = wf("pinsPolicy")
FLAG_ENABLED = wf("flagEnabled")
FLAG_VERSION = wf("flagVersion")
DEFAULT_VARIANT = wf("defaultVariant")
TARGETING = wf("targeting")
HAS_FLAG_VARIANT = wf("hasFlagVariant")
EVALUATED_FLAG = wf("evaluatedFlag")
FLAG_VARIANT = wf("flagVariant")
FLAG_REASON = wf("flagReason")
FLAG_BUCKET = wf("flagBucket")
EXPERIMENTS_NODE = NamedNode(BASE + "experiments")

# Decisions and audit
DECISION = wf("Decision")
RANKED_CANDIDATE = wf("RankedCandidate")
ERASURE = wf("Erasure")
SUBJECT_PSEUDONYM = wf("subjectPseudonym")
DECISION_CHANNEL = wf("channel")
PERSONALIZED = wf("personalized")
REQUESTED_LIMIT = wf("requestedLimit")
POLICY_VERSION_OF_DECISION = wf("policyVersion")
MODEL_VERSION_OF_DECISION = wf("modelVersion")
VARIANT = wf("variant")
HAS_CANDIDATE = wf("hasCandidate")
CANDIDATES = wf("candidates")
CANDIDATE_STEP = wf("candidateStep")
SCORE = wf("score")
RULE_SCORE = wf("ruleScore")
MODEL_SCORE = wf("modelScore")
RANK = wf("rank")
SHOWN_CONTENT = wf("shownContent")
CONTENT_VERSION = wf("contentVersion")
REQUESTED_LOCALE = wf("requestedLocale")
PROPENSITY = wf("propensity")
EXPLORED = wf("explored")
EXPLORATION_RATE = wf("explorationRate")
MIXING = wf("mixing")
CALIBRATED_SUM = wf("CalibratedSum")
OFFLINE_MARGIN = wf("offlineMargin")
OFFLINE_EVALUATION = wf("OfflineEvaluation")
ESTIMATES = wf("estimates")
FLAG_CHANGE_REQUEST = wf("FlagChangeRequest")
REQUEST_STATUS = wf("requestStatus")
PROPOSED_STATE = wf("proposedState")
REASON = wf("reason")
SEQUENCE = wf("sequence")
PREVIOUS_HASH = wf("previousHash")
CHAIN = wf("chain")
REQUESTED_BY = wf("requestedBy")
TRIPLES_REMOVED = wf("triplesRemoved")
PURGE = wf("Purge")
RECORDS_REMOVED = wf("recordsRemoved")
PURGE_COUNTS = wf("purgeCounts")

# Retention
RETENTION_RULE = wf("RetentionRule")
RETENTION_PERIOD = wf("retentionPeriod")
APPLIES_TO_KIND = wf("appliesToKind")
APPLIES_TO_PURPOSE = wf("appliesToPurpose")
MEASURED_FROM = wf("measuredFrom")
SUPERSEDED_AT = wf("supersededAt")

# PROV-O
PROV_ACTIVITY = prov("Activity")
PROV_ENTITY = prov("Entity")
PROV_USED = prov("used")
PROV_WAS_GENERATED_BY = prov("wasGeneratedBy")
PROV_WAS_ASSOCIATED_WITH = prov("wasAssociatedWith")
PROV_WAS_DERIVED_FROM = prov("wasDerivedFrom")
PROV_STARTED_AT = prov("startedAtTime")
PROV_ENDED_AT = prov("endedAtTime")
PROV_GENERATED_AT = prov("generatedAtTime")
PROV_WAS_REVISION_OF = prov("wasRevisionOf")

# Knowledge history (service/knowledge/history.py)
KNOWLEDGE_VERSION = wf("KnowledgeVersion")
OF_GRAPH = wf("ofGraph")
VERSION_NUMBER = wf("versionNumber")
LOADED_BY = wf("loadedBy")
SNAPSHOT = wf("snapshot")
RESTORES = wf("restores")

# Fairness monitoring (service/governance/fairness_gate.py)
PROTECTED_GROUP = wf("ProtectedGroup")
PROTECTED_ATTRIBUTE = wf("protectedAttribute")
FAIRNESS_REPORT = wf("FairnessReport")
FAIRNESS_FIGURES = wf("fairnessFigures")
BREACH = wf("breach")
PASSED_GATE = wf("passedGate")

# High-impact steps (service/governance/impact.py)
IMPACT_AREA = wf("impactArea")
IMPACT_ASSESSMENT = wf("ImpactAssessment")
ASSESSED_CONTENT = wf("assessedContent")
BASELINE = wf("baseline")
HIGH_IMPACT = wf("highImpact")
REQUIRES_ROLE = wf("requiresRole")
RANKED_SUBJECTS = wf("rankedSubjects")
CHANGED_SUBJECTS = wf("changedSubjects")
IMPACT_FIGURES = wf("impactFigures")
REPORTED_USERS = wf("reportedUsers")
REPORTED_GROUPS = wf("reportedGroups")

# Named graphs (ARCHITECTURE.md, store layout)
ONTOLOGY_GRAPH = NamedNode(GRAPH_BASE + "ontology")
CATALOG_GRAPH_BASE = GRAPH_BASE + "catalog/"
POLICY_GRAPH_BASE = GRAPH_BASE + "policies/"
ENTAILMENTS_GRAPH = NamedNode(GRAPH_BASE + "entailments")
# The names of the knowledge graphs, rewritten with each load: a process lists them from here instead of
# walking every named graph (one per user and more: 1 s at 100,000 users).
KNOWLEDGE_INDEX_GRAPH = NamedNode(GRAPH_BASE + "knowledge-index")
CONSENT_GRAPH = NamedNode(GRAPH_BASE + "consent")
AUDIT_GRAPH = NamedNode(GRAPH_BASE + "audit")
MODELS_GRAPH = NamedNode(GRAPH_BASE + "models")
EXPERIMENTS_GRAPH = NamedNode(GRAPH_BASE + "experiments")
MODEL_ARTIFACTS_GRAPH = NamedNode(GRAPH_BASE + "model-artifacts")
USER_GRAPH_BASE = GRAPH_BASE + "user/"
IDEMPOTENCY_GRAPH = NamedNode(GRAPH_BASE + "idempotency")
OUTBOX_GRAPH = NamedNode(GRAPH_BASE + "outbox")  # messages for senders, and where each stands
LOCKS_GRAPH = NamedNode(GRAPH_BASE + "locks")  # leases the processes of a shared store take (leases.py)
META_GRAPH = NamedNode(GRAPH_BASE + "meta")
# Every version of each catalog and policy graph, as snapshots (service/knowledge/history.py).
HISTORY_GRAPH = NamedNode(GRAPH_BASE + "knowledge-history")

# The store itself (service/knowledge/migrations.py)
STORE_NODE = NamedNode(BASE + "store")
LAYOUT_VERSION = wf("layoutVersion")
KNOWLEDGE_REVISION = wf("knowledgeRevision")  # changes with every load and policy approval (graph meta)

# Idempotent writes (service/decisions/idempotency.py)
WRITE_RECEIPT = wf("WriteReceipt")
REQUEST_HASH = wf("requestHash")
EVENT_COUNT = wf("eventCount")
ACCEPTED_AT = wf("acceptedAt")
STORED_EVENT = wf("storedEvent")
STORED_DECISION = wf("storedDecision")


# Delivery to senders (service/delivery/)
ONBOARDING_MESSAGES = wf("OnboardingMessages")
SENDER = wf("Sender")
SENDER_CHANNEL = wf("senderChannel")
DELIVERY_PURPOSE = wf("deliveryPurpose")
DELIVERY = wf("Delivery")
HAS_DELIVERY = wf("hasDelivery")
DELIVERY_OF = wf("deliveryOf")
DELIVERY_CHANNEL = wf("deliveryChannel")
DELIVERY_PAYLOAD = wf("deliveryPayload")
DELIVERY_STATE = wf("deliveryState")
DELIVERY_PENDING = wf("DeliveryPending")
DELIVERY_DELIVERED = wf("DeliveryDelivered")
DELIVERY_DEAD_LETTERED = wf("DeliveryDeadLettered")
DELIVERY_CANCELLED = wf("DeliveryCancelled")
DELIVERY_ATTEMPTS = wf("deliveryAttempts")
NEXT_ATTEMPT_AT = wf("nextAttemptAt")
LAST_DELIVERY_ERROR = wf("lastDeliveryError")
DELIVERY_STATE_AT = wf("deliveryStateAt")
ABOUT_DELIVERY = wf("aboutDelivery")


KNOWLEDGE_GRAPH_PREFIXES = (ONTOLOGY_GRAPH.value, CATALOG_GRAPH_BASE, POLICY_GRAPH_BASE)


def is_knowledge_graph(name: NamedNode) -> bool:
    """Ontology, catalog and policy graphs: what owlrl reasons over and shapes check as a whole."""
    return name.value == ONTOLOGY_GRAPH.value or name.value.startswith(KNOWLEDGE_GRAPH_PREFIXES[1:])


def user_iri(user_id: str) -> NamedNode:
    return NamedNode(USER_BASE + user_id)


def user_graph(user_id: str) -> NamedNode:
    return NamedNode(USER_GRAPH_BASE + user_id)


def catalog_graph(name: str) -> NamedNode:
    return NamedNode(CATALOG_GRAPH_BASE + name)


def local_id(iri: str) -> str:
    """Return the public ID of an entity: the last segment of its IRI."""
    return iri.rstrip("/#").rsplit("#", 1)[-1].rsplit("/", 1)[-1]
