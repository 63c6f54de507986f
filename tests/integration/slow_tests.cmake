# Read by ctest after the discovered tests of this directory
# (TEST_INCLUDE_FILES): the integration tests that take 6 s or more in the
# dev build on the 2-core CI machine (CTestCostData, 2026-11-27; 5-10x that
# under qemu-user) also carry the label `slow`, so a leg can leave them out
# (`ctest -LE slow`) or run only them (`-L slow`). ctest ignores a name here
# that no test has (a renamed test silently loses `slow`): rename it here too.
set(storewatch_slow_tests
  CrashTest.KillNineWhileDevicesChangeLeavesAWholeTimeline
  SyncFault.BrokerDownWhileIncidentsHappenThenBackEmpty
  SyncFault.KillNineWhileDrainingABacklogLosesNothing
  SyncFault.LatencyAndLossBetweenAgentAndBroker
  DaemonNotifies.TeamsErrorBodiesAndThrottlingAreRetried
  DaemonNotifies.RetryAfterLongerThanTheBackoffIsHonoured
  DaemonNotifies.AChannelThatWasDownGetsTheNoticeWhenItComesBack
  DaemonNotifies.QueuedNoticesSurviveARestart
  DaemonNotifies.ANoticeUndeliveredPastNotifyTtlIsDroppedWithAnEvent
  DaemonNotifies.AReceiverSlowerThanTheTimeoutIsAFailedAttemptAndRetried
  DaemonNotifies.RateLimitHoldsNoticesBackAcrossRestartsAndNeverDropsThem
  DaemonNotifies.IncidentsOpenedWithinGroupWaitGoOutAsOneMessage
  DaemonNotifies.AGroupIsFormedFromTheOutboxAfterARestart
  Watchdog.PingsComeWhileTheLoopRunsAndStopWhileItIsStuck
  Watchdog.PingsStopWhileTheStoreWriterCannotCommit
  JournalLog.NoLinePerProbeResultAtInfo
  CliNext.AtStartUpAProbeNotCheckedYetIsPendingNotItsLastMessage
  DaemonIncidents.OverTheSizeCapWithNothingSyncedRaisesACriticalStorageIncident
  HostileStore.AFullDiskIsSeenEverywhereAndAKillNineLosesOnlyWhatWaitedInMemory
  Soak.FlappingProbesCommandsAndActionsForTenMinutesKeepEveryInvariant)
foreach(t IN LISTS storewatch_slow_tests)
  set_tests_properties(${t} PROPERTIES LABELS "integration;slow")
endforeach()
# The soak runs for ten minutes, then drains to HQ; it starts first (the
# highest COST), so the rest of a leg runs beside it on the other slot.
set_tests_properties(Soak.FlappingProbesCommandsAndActionsForTenMinutesKeepEveryInvariant
                     PROPERTIES TIMEOUT 1200 COST 100000)
