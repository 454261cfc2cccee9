// The seeded simulation of the Raft core and its in-memory test doubles. Used by the core's
// unit and simulation tests and by `npm run sim`; never by the servers.
export { entryKey, SafetyChecker, SafetyViolation } from './checker';
export { MemoryStorage } from './memory-storage';
export { jsonMembershipCodec } from './membership-codec';
export {
  defaultFaultRates,
  defaultSimulationOptions,
  runSimulation,
  Simulation,
  simulatedTermMax,
  simulationOptionsFor,
  simulationProfiles,
  type SimulationProfile,
  type FaultRates,
  type SimulationOptions,
  type SimulationResult,
} from './simulation';
