// better-sqlite3 ships no type declarations and none are installed: NativeSqlite types the members the host uses.
declare module "better-sqlite3" {
  const Database: unknown
  export default Database
}
