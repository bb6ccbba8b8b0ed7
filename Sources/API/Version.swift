/// The version of this build of Coxswain.
public enum CoxVersion {
    public static let version = "0.1.0-dev"
    /// What Kubernetes API shape the server imitates (reported by `/version`).
    public static let kubernetesCompatibility = "v1.30"
}
