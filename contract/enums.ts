/** The enumerations program and agent share; imports nothing. */

/** Engines the agent knows how to back up and restore. */
export const ENGINES = ["postgres", "redis", "volume"] as const;
export type Engine = (typeof ENGINES)[number];

/** Service tiers (the seed's RPO classes: critical 5 min, important 1 h, secondary 24 h). */
export const TIERS = ["critical", "important", "secondary"] as const;
export type Tier = (typeof TIERS)[number];

/** Object-lock modes. GOVERNANCE can be lifted by a privileged user; COMPLIANCE by nobody. */
export const LOCK_MODES = ["GOVERNANCE", "COMPLIANCE"] as const;
export type LockMode = (typeof LOCK_MODES)[number];

/** How backups reach the DR region: MinIO bucket replication, or the agent's replicator. */
export const REPLICATION_MODES = ["native", "replicator"] as const;
export type ReplicationMode = (typeof REPLICATION_MODES)[number];
