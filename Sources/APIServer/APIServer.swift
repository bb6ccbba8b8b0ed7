/// The API server: Kubernetes-shaped REST and watch over TLS in front of the Store.
/// Built in issue #3 (API server over TLS); this module holds only its namespace so far.
public enum APIServerModule {
    public static let component = "apiserver"
}
