// The seed example's IDL, unchanged apart from this comment.
service HelloService
{
    void sayHello()
    string getData(1:string input)
}
