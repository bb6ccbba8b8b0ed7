import API
import ArgumentParser
import Client
import Foundation
import PKI
import SwiftProtobuf

/// `cox token create|list|revoke`: bootstrap tokens (for `cox agent --token` on a new host) and
/// bearer tokens for programs. The server keeps only a hash; the token is shown once, at creation.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "token", abstract: "Create, list and revoke tokens.",
                                                    subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Create a token and print it (only now: the server stores a hash).",
            discussion: "Without --user: a bootstrap token, which lets a new host join (cox agent --token). With --user: a bearer token acting as that user and groups, for programs and scripts.")

        @Option(help: "How long the token is valid: e.g. 30m, 24h, 720h; 0 for never (bearer tokens only).") var ttl = "24h"
        @Option(help: "The user a bearer token acts as (none: a bootstrap token).") var user: String?
        @Option(help: "A group the bearer token's user is in (repeatable).") var group: [String] = []
        @Option(help: "What the token is for (shown by `cox token list`).") var comment: String?
        @Flag(help: "Print the full `cox agent` command that joins a host with this bootstrap token.") var printJoinCommand = false
        @OptionGroup var client: ClientOptions

        func validate() throws {
            let seconds = try TokenTTL.seconds(ttl)
            if user == nil && !group.isEmpty { throw ValidationError("--group needs --user: a bootstrap token takes no groups") }
            if user == nil && seconds == 0 { throw ValidationError("--ttl 0: bootstrap tokens must expire") }
            if user != nil && printJoinCommand { throw ValidationError("--print-join-command is for bootstrap tokens (no --user)") }
        }

        func run() async throws {
            let kubeconfig = try Kubeconfig.load(path: try client.resolveKubeconfig())
            let token = try await withClient(client) { api in
                try await Tokens.create(api, user: user, groups: group, ttlSeconds: try TokenTTL.seconds(ttl), comment: comment)
            }
            if printJoinCommand {
                print(try Tokens.joinCommand(server: kubeconfig.server, token: token, caPEM: kubeconfig.caPEM))
            } else {
                print(token)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List tokens (their IDs; secrets are never shown).")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let tokens = try await withClient(client) { try await $0.list(Token.self, namespace: nil).items }
            print(Table.render(tokens, allNamespaces: false, wide: false), terminator: "")
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a token: it is refused (401) from now on.")
        @Argument(help: "The token's ID (the part before the dot), or the whole token.") var token: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let id = String(token.split(separator: ".").first ?? "")
            guard TokenFormat.isID(id) else { throw ValidationError("\"\(token)\" is not a token ID (6 characters of a-z and 0-9)") }
            _ = try await withClient(client) { try await $0.delete(Token.self, namespace: "", name: id) }
            print("token/\(id) revoked")
        }
    }
}

/// Token lifetimes as Go writes durations: `90s`, `30m`, `24h`, `1h30m`; `0` for none.
enum TokenTTL {
    static func seconds(_ text: String, flag: String = "--ttl") throws -> Int64 {
        if text == "0" { return 0 }
        var total: Int64 = 0
        var number = ""
        var sawUnit = false
        for character in text {
            if character.isASCII && character.isNumber { number.append(character); continue }
            guard let value = Int64(number), let unit = ["h": Int64(3600), "m": 60, "s": 1][String(character)] else {
                throw ValidationError("\(flag): \"\(text)\" is not a duration such as 30m, 24h or 1h30m")
            }
            total += value * unit
            number = ""
            sawUnit = true
        }
        guard number.isEmpty, sawUnit, total > 0 else { throw ValidationError("\(flag): \"\(text)\" is not a duration such as 30m, 24h or 1h30m") }
        return total
    }
}

enum Tokens {
    /// Creates a token on the server (only its hash is sent) and returns it, `ID.SECRET`.
    static func create(_ client: APIClient, user: String?, groups: [String], ttlSeconds: Int64, comment: String?) async throws -> String {
        let secret = TokenFormat.generate()
        var token = Token()
        token.setTypeMeta()
        token.metadata.name = String(secret.prefix(6))
        token.spec.usage = user == nil ? TokenFormat.bootstrap : TokenFormat.authentication
        token.spec.user = user ?? ""
        token.spec.groups = groups
        token.spec.secretHash = Token.hash(secret)
        if ttlSeconds > 0 { token.spec.expires = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(TimeInterval(ttlSeconds))) }
        if let comment { token.spec.comment = comment }
        _ = try await client.create(token)
        return secret
    }

    /// `cox agent --server URL --token T --ca-cert-hash sha256:…` for a host to join this cluster.
    static func joinCommand(server: String, token: String, caPEM: String) throws -> String {
        let hash = try CertificateAuthority.publicKeyHash(ofPEM: caPEM)
        return "cox agent --server \(server) --token \(token) --ca-cert-hash \(hash)"
    }
}
