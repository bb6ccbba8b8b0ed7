import API
import Client
import Foundation

extension PodManager {
    /// Sets the pod's volumes up, or brings their contents up to date when the sync interval has
    /// passed; measures emptyDirs with a sizeLimit and evicts the pod past one. A failure is a
    /// FailedMount event and a retry with back-off; volumes already set up stay as they were (a
    /// ConfigMap deleted under a running pod leaves its last files, as in Kubernetes).
    func syncVolumes(_ uid: String) async {
        guard let state = pods[uid], !state.volumesBusy else { return }
        let now = ContinuousClock.now
        if let retry = state.volumesRetryAt, retry > now { return }
        let contentsDue = state.volumePaths == nil || state.volumesSyncedAt.map { now - $0 >= configuration.volumeSyncInterval } ?? true
        if !contentsDue {
            await checkEmptyDirUsage(uid)
            return
        }
        pods[uid]!.volumesBusy = true
        let pod = state.pod
        let client = self.client
        let namespace = pod.metadata.namespace
        let fetch: PodVolumes.Fetch = { secret, name in
            do {
                if secret {
                    return try await client.get(Secret.self, namespace: namespace, name: name).data.compactMapValues { Data(base64Encoded: $0) }
                }
                let object = try await client.get(ConfigMap.self, namespace: namespace, name: name)
                var data = object.data.mapValues { Data($0.utf8) }
                for (key, value) in object.binaryData { data[key] = Data(base64Encoded: value) }
                return data
            } catch let error as ClientError where error.code == 404 {
                return nil
            }
        }
        let result: Result<[String: String], any Error>
        do { result = .success(try await volumes.setUp(pod, fetch: fetch)) } catch { result = .failure(error) }
        guard pods[uid] != nil else {
            tearDownVolumes(uid, pod)  // deleted while its volumes were set up
            return
        }
        pods[uid]!.volumesBusy = false
        switch result {
        case .success(let paths):
            if pods[uid]!.volumePaths == nil {
                logger.info("volumes ready", metadata: ["pod": "\(namespace)/\(pod.metadata.name)", "volumes": "\(paths.keys.sorted().joined(separator: ","))"])
            }
            pods[uid]!.volumePaths = paths
            pods[uid]!.volumesSyncedAt = .now
            pods[uid]!.volumesRetryAt = nil
            pods[uid]!.volumeFailures = 0
            await checkEmptyDirUsage(uid)
        case .failure(let error):
            pods[uid]!.volumeFailures += 1
            // The kubelet's volume back-off: 0.5 s doubling, at most about 2 minutes.
            var delay = Duration.milliseconds(500)
            for _ in 1..<min(pods[uid]!.volumeFailures, 9) { delay *= 2 }
            pods[uid]!.volumesRetryAt = .now + delay
            logger.warning("cannot set the pod's volumes up", metadata: ["pod": "\(namespace)/\(pod.metadata.name)", "error": "\(error)"])
            event(pod, container: nil, .warning, "FailedMount", "\(error)")
        }
    }

    /// Evicts the pod when an emptyDir on the node's disk holds more than its sizeLimit, as the
    /// kubelet's eviction manager does (a Memory emptyDir is held to it by its tmpfs's size).
    func checkEmptyDirUsage(_ uid: String) async {
        guard let state = pods[uid], state.evicted == nil else { return }
        let limited = state.pod.spec.volumes.filter { $0.hasEmptyDir && $0.emptyDir.medium != "Memory" && !$0.emptyDir.sizeLimit.isEmpty }
        guard !limited.isEmpty else { return }
        let now = ContinuousClock.now
        if let checked = state.emptyDirCheckedAt, now - checked < configuration.emptyDirCheckInterval { return }
        pods[uid]!.emptyDirCheckedAt = now
        for volume in limited {
            guard let limit = try? Quantity(parsing: volume.emptyDir.sizeLimit).value else { continue }
            let used = PodVolumes.usage(volumes.directory(uid, volume))
            if Decimal(used) > limit {
                await evict(uid, reason: "Evicted", message: "Usage of EmptyDir volume \"\(volume.name)\" exceeds the limit \"\(volume.emptyDir.sizeLimit)\".")
                return
            }
        }
    }

    /// Stops the pod's containers (at once unless given a grace period) and leaves it Failed with
    /// `reason` (Evicted, DeadlineExceeded); its controller, if any, makes a replacement.
    func evict(_ uid: String, reason: String, message: String, grace: Duration = .zero) async {
        guard let state = pods[uid], state.evicted == nil else { return }
        let pod = state.pod
        pods[uid]!.evicted = message
        pods[uid]!.failedReason = reason
        logger.warning("stopping the pod for good", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "reason": "\(reason)", "message": "\(message)"])
        event(pod, container: nil, .warning, reason, message)
        await stopAll(state, grace: grace)
        for (name, track) in state.tracks {
            pods[uid]?.tracks[name]?.done = true
            if let id = track.current?.id, let final = await runtime.status(id: id) { pods[uid]?.tracks[name]?.current = final }
        }
        report(uid)
    }

    func tearDownVolumes(_ uid: String, _ pod: Pod) {
        if let problem = volumes.tearDown(uid) {
            logger.warning("cannot remove the pod's volumes", metadata: ["pod": "\(pod.metadata.namespace)/\(pod.metadata.name)", "error": "\(problem)"])
        }
    }

    /// Volume directories of pods this agent does not have (deleted while it was away).
    func removeOrphanedVolumes(except keep: Set<String>) {
        for uid in volumes.podsOnDisk() where !keep.contains(uid) {
            if let problem = volumes.tearDown(uid) {
                logger.warning("cannot remove an orphaned pod's volumes", metadata: ["uid": "\(uid)", "error": "\(problem)"])
            } else {
                logger.info("removed the volumes of a pod that is gone", metadata: ["uid": "\(uid)"])
            }
        }
    }
}
