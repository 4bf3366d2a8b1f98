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

/**
 * Recovery priorities (the seed's incident classes) and their recovery time objectives: P0 15 min,
 * P1 1 h, P2 4 h, P3 24 h. A service's priority sets its default RTO.
 */
export const PRIORITIES = ["P0", "P1", "P2", "P3"] as const;
export type Priority = (typeof PRIORITIES)[number];
export const PRIORITY_RTO_SECONDS: Readonly<Record<Priority, number>> = { P0: 900, P1: 3600, P2: 14400, P3: 86400 };
/** A service's priority when its config names none: critical data is P0, important P1, secondary P2. */
export const TIER_PRIORITY: Readonly<Record<Tier, Priority>> = { critical: "P0", important: "P1", secondary: "P2" };
